import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Flask (flask run / make run) listens on 127.0.0.1:5000; `npm run dev` serves the
// UI with hot reload on 127.0.0.1:5173 and forwards everything server-side to it.
const backend = 'http://127.0.0.1:5000';

export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: {
      '/api': backend,
      '/hooks': backend,
      '/healthz': backend,
      '/demo': backend,
    },
  },
});
