import { defineConfig } from 'vite';

// No React plugin: esbuild's automatic JSX runtime is all a production build needs,
// and it keeps the install to what installs everywhere (Vite 7 on npm 10 or 11).
export default defineConfig({
  esbuild: { jsx: 'automatic' },
  resolve: { conditions: ['tessera-source'] },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, target: 'es2022' },
});
