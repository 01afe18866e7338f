// The editor's API calls (mapping preview, test run, samples, schemas).
import { api, withQuery } from '../../api.js';

const enc = encodeURIComponent;

export const editorApi = {
  /** { output, duration_ms }; a 422 ApiError carries body.error = { code, position, message }. */
  preview: (expression, input, opts) =>
    api('/api/v1/mappings/preview', { method: 'POST', body: { expression, input: input ?? null }, ...opts }),
  testRun: (flowId, body, opts) => api(`/api/v1/flows/${enc(flowId)}/test-run`, { method: 'POST', body, ...opts }),
  samples: (opts) => api('/api/v1/samples', opts),
  sample: (name, opts) => api(`/api/v1/samples/${enc(name)}`, opts),
  recentPayloads: (flowId, limit = 10, opts) =>
    api(withQuery(`/api/v1/flows/${enc(flowId)}/recent-payloads`, { limit }), opts),
  schemas: (opts) => api('/api/v1/schemas', opts),
  schema: (name, opts) => api(`/api/v1/schemas/${enc(name)}`, opts),
};
