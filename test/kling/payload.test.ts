import { describe, expect, it } from 'vitest';
import { KlingPayloadError, parseKlingCallback } from '../../src/kling/payload.ts';

describe('parseKlingCallback', () => {
  it('reads the reference §3 payload', () => {
    const task = parseKlingCallback({
      task_id: '860010',
      task_status: 'succeed',
      task_status_msg: '',
      created_at: 1722769557708,
      updated_at: 1722769600000,
      final_unit_deduction: '4',
      final_balance_deduction: { quota: '4', list_price: '0.56' },
      task_info: { parent_video: { id: '', url: '', duration: '' }, external_task_id: 'ext-10' },
      task_result: { images: [{ index: 0, url: '' }], videos: [{ id: 'v-10', url: 'https://cdn.example/10.mp4', duration: '5' }] },
    });
    expect(task).toEqual({
      taskId: '860010',
      externalTaskId: 'ext-10',
      status: 'succeed',
      statusMessage: null,
      videos: [{ id: 'v-10', url: 'https://cdn.example/10.mp4', durationSeconds: 5 }],
      finalUnitDeduction: '4',
      createdAt: new Date(1722769557708),
      updatedAt: new Date(1722769600000),
      raw: expect.any(Object),
    });
  });

  it('accepts CometAPI’s minimal payload and the wrapped form', () => {
    expect(parseKlingCallback({ task_id: 'a', task_status: 'processing' })).toMatchObject({
      taskId: 'a',
      status: 'processing',
      externalTaskId: null,
      finalUnitDeduction: null,
      createdAt: null,
    });
    expect(parseKlingCallback({ data: { task_id: 'b', task_status: 'submitted', task_info: { external_task_id: 'e' } } })).toMatchObject({
      taskId: 'b',
      externalTaskId: 'e',
    });
  });

  it('throws KlingPayloadError for unknown shapes', () => {
    for (const body of [null, 'text', [], {}, { task_id: 'c' }, { task_id: 'c', task_status: 'done' }, { task_status: 'succeed' }]) {
      expect(() => parseKlingCallback(body), JSON.stringify(body)).toThrow(KlingPayloadError);
    }
  });
});
