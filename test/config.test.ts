import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 4000,
      host: '0.0.0.0',
      databaseUrl: null,
      dataDir: '.data',
      cometApiKey: null,
      cometApiBaseUrl: 'https://api.cometapi.com',
      publicBaseUrl: null,
      adminApiKey: null,
      logLevel: 'info',
      role: 'all',
      videoStore: { kind: 'local', dir: resolve('.data', 'videos') },
      // No COMETAPI_KEY: the built-in simulator serves results on loopback.
      allowPrivateUrls: true,
      corsOrigins: null,
      taskDeadlineMinutes: 30,
      shutdownTimeoutMs: 10_000,
    });
  });

  it('names every bad variable in one error', () => {
    let caught: unknown;
    try {
      loadConfig({ PORT: 'abc', DATABASE_URL: 'mysql://x', ROLE: 'boss', ADMIN_API_KEY: 'short' });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const message = (caught as ConfigError).message;
    for (const name of ['PORT', 'DATABASE_URL', 'ROLE', 'ADMIN_API_KEY']) expect(message).toContain(name);
    // A secret's value is never echoed back.
    expect(message).not.toContain('short');
    expect((caught as ConfigError).problems).toHaveLength(4);
  });

  it('treats empty variables as unset and parses lists, flags and URLs', () => {
    const config = loadConfig({
      PORT: '',
      CORS_ORIGINS: 'https://a.example, https://b.example ,',
      ALLOW_PRIVATE_URLS: 'true',
      PUBLIC_BASE_URL: 'https://gw.example/prefix/',
      DATABASE_URL: 'postgresql://u@h:5432/db',
    });
    expect(config.port).toBe(4000);
    expect(config.corsOrigins).toEqual(['https://a.example', 'https://b.example']);
    expect(config.allowPrivateUrls).toBe(true);
    expect(config.publicBaseUrl).toBe('https://gw.example/prefix');
    expect(config.databaseUrl).toBe('postgresql://u@h:5432/db');
  });

  it('requires PUBLIC_BASE_URL with a real upstream key, and then fetches no private address unless told', () => {
    expect(() => loadConfig({ COMETAPI_KEY: 'live-key' })).toThrow(/PUBLIC_BASE_URL: is required when COMETAPI_KEY is set/);
    const config = loadConfig({ COMETAPI_KEY: 'live-key', PUBLIC_BASE_URL: 'https://gw.example' });
    expect(config.allowPrivateUrls).toBe(false);
    expect(
      loadConfig({ COMETAPI_KEY: 'live-key', PUBLIC_BASE_URL: 'https://gw.example', ALLOW_PRIVATE_URLS: 'true' }).allowPrivateUrls,
    ).toBe(true);
  });

  it('requires a bucket for the S3 store', () => {
    expect(() => loadConfig({ VIDEO_STORE: 's3' })).toThrow(/S3_BUCKET/);
  });
});
