import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

describe('OTEL_TRACING', () => {
  const exporter = new InMemorySpanExporter();
  let gateway: TestGateway;
  beforeAll(async () => {
    const provider = new BasicTracerProvider();
    provider.addSpanProcessor(new SimpleSpanProcessor(exporter));
    trace.setGlobalTracerProvider(provider);
    gateway = await startGateway({ env: { OTEL_TRACING: 'true' } });
  });
  afterAll(async () => {
    await gateway?.stop();
    trace.disable();
  });

  it('traces GraphQL operations through the global provider, without variables', async () => {
    const tenant = await createTenant(gateway, 'Traced');
    exporter.reset();
    const query = 'query WhoAmI($id: ID!) { viewer { tenant { name } } omniTask(id: $id) { id } }';
    expectData(await gateway.graphql(query, { id: 'do-not-trace-me' }, tenant.apiKey));
    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => span.name)).toContain('query.WhoAmI');
    expect(JSON.stringify(spans.map((span) => span.attributes))).not.toContain('do-not-trace-me');
  });
});
