#!/bin/sh
# Regenerates the simulator's result videos, src/simulator/videos/<ratio>-<seconds>s.mp4: one per
# aspect ratio (16:9, 9:16, 1:1) and per duration the upstream allows (3 to 10 s).
#
# Each is a small H.264 MP4 that every browser plays: baseline profile, yuv420p, 12 fps, the moov
# box first (+faststart), a moving test pattern with the aspect ratio and a running timestamp
# drawn on it, and a quiet 440 Hz tone (AAC, mono). Metadata and encoder tags are left out, so a
# re-run with the same ffmpeg gives the same bytes.
#
# Needs Debian's ffmpeg (built with libx264 and libfreetype) and the DejaVu fonts:
#   apt-get install -y ffmpeg fonts-dejavu-core
set -eu

cd "$(dirname "$0")/.."
out=src/simulator/videos
font=/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf
fps=12
mkdir -p "$out"

for spec in 16x9:320x180 9x16:180x320 1x1:240x240; do
  ratio=${spec%%:*}
  size=${spec#*:}
  label=$(echo "$ratio" | sed 's/x/\\:/')
  for seconds in 3 4 5 6 7 8 9 10; do
    file="$out/$ratio-${seconds}s.mp4"
    ffmpeg -hide_banner -loglevel error -y \
      -f lavfi -i "testsrc2=size=$size:rate=$fps:duration=$seconds" \
      -f lavfi -i "sine=frequency=440:sample_rate=22050:duration=$seconds" \
      -filter:v "drawbox=x=0:y=ih/2-22:w=iw:h=44:color=black@0.6:t=fill,\
drawtext=fontfile=$font:fontsize=14:fontcolor=white:x=(w-tw)/2:y=h/2-19:text='$label  ${seconds} s',\
drawtext=fontfile=$font:fontsize=14:fontcolor=white:x=(w-tw)/2:y=h/2+3:text='%{pts\:hms}'" \
      -filter:a "volume=0.05" \
      -c:v libx264 -profile:v baseline -level:v 3.0 -pix_fmt yuv420p -preset veryslow -crf 30 -g $fps -threads 1 \
      -c:a aac -b:a 24k -ac 1 \
      -shortest -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
      -movflags +faststart \
      "$file"
    echo "$file: $(wc -c < "$file") bytes"
  done
done
