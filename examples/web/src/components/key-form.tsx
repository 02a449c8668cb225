import { useId, useState } from 'react';
import type { FormEvent } from 'react';

/** Asks for the tenant's API key; the app keeps it in this tab's sessionStorage only. */
export function KeyForm({ onKey, refused }: { onKey: (key: string) => void; refused: boolean }) {
  const id = useId();
  const [key, setKey] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (key.trim() !== '') onKey(key.trim());
  };
  return (
    <main className="sign-in">
      <form className="panel" onSubmit={submit} aria-label="Sign in">
        <h1>Omni Gateway</h1>
        <p>Create Kling Omni videos, watch them finish live, and play them.</p>
        {refused && (
          <p className="problem" role="alert">
            The gateway refused that key. It may be mistyped or revoked.
          </p>
        )}
        <label htmlFor={`${id}-key`}>API key</label>
        <input
          id={`${id}-key`}
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder="og_…"
          value={key}
          onChange={(e) => setKey(e.target.value)}
        />
        <p className="hint">
          Kept in this tab's session storage and sent as <code>Authorization: Bearer …</code>. <code>npm run example</code> prints a link
          with the sandbox tenant's key.
        </p>
        <button type="submit" className="primary">
          Open
        </button>
      </form>
    </main>
  );
}
