import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs: the built app works under any path (a gateway prefix, a static host).
  base: './',
  build: { outDir: 'dist', emptyOutDir: true },
});
