/** A task's status in the upstream's own words. */
export type TaskStatus = 'submitted' | 'processing' | 'succeed' | 'failed';

/** A task as the simulated upstream keeps it. */
export type SimTask = {
  id: string;
  account: string;
  externalTaskId: string | null;
  status: TaskStatus;
  statusMessage: string;
  createdAt: number;
  updatedAt: number;
  callbackUrl: string | null;
  durationSeconds: number;
  /** As requested; null when the request named none (a first frame or a base video sets it). */
  aspectRatio: '16:9' | '9:16' | '1:1' | null;
  units: number;
  failWith: string | null;
  /** created while callbacks were switched off: this task never calls back */
  silent: boolean;
  watermark: boolean;
  videoId: string;
  /** The result videos of a task finished through `finish` with videos of its own (else generated). */
  resultVideos: { id: string; url: string; duration: string }[] | null;
  resultBase: string;
  callbacks: Promise<void>;
};
