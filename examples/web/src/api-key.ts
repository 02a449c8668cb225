const STORAGE_KEY = 'omni-gateway.api-key';

/**
 * The API key lives in sessionStorage: it survives a reload of this tab and is gone with the tab.
 * A link may carry it in the fragment (`#key=og_…`, as `npm run example` prints it): the fragment
 * never reaches a server, and is taken out of the address bar at once.
 */
export function takeKeyFromFragment(location: Location, history: History): void {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get('key');
  if (key === null) return;
  if (key.trim() !== '') storeApiKey(key.trim());
  history.replaceState(history.state, '', `${location.pathname}${location.search}`);
}

export function readApiKey(): string | null {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function storeApiKey(key: string): void {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forgetApiKey(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}
