import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { readApiKey, takeKeyFromFragment } from './api-key.ts';
import { App } from './app.tsx';
import { loadRuntimeConfig } from './runtime-config.ts';
import { openSession } from './session.ts';
import './styles.css';

takeKeyFromFragment(window.location, window.history);
const config = await loadRuntimeConfig(window.location);
const key = readApiKey();
const root = document.getElementById('root');
if (root === null) throw new Error('index.html has no #root');
createRoot(root).render(
  <StrictMode>
    <App config={config} initial={key === null ? null : openSession(config, key)} />
  </StrictMode>,
);
