// API helpers for alerts, reliability (MTTD/MTTR) and reconciliation.
import { api, withQuery } from '../api.js';

const id = (value) => encodeURIComponent(value);

export const alertsApi = {
  list: (params, opts) => api(withQuery('/api/v1/alerts', params), opts),
  get: (alertId, opts) => api(`/api/v1/alerts/${id(alertId)}`, opts),
  acknowledge: (alertId) => api(`/api/v1/alerts/${id(alertId)}/acknowledge`, { method: 'POST' }),
  resolve: (alertId) => api(`/api/v1/alerts/${id(alertId)}/resolve`, { method: 'POST' }),
  reliability: (flowId, opts) => api(`/api/v1/flows/${id(flowId)}/reliability`, opts),
};

export const reconciliationApi = {
  list: (flowId, opts) => api(`/api/v1/flows/${id(flowId)}/reconciliation`, opts),
  run: (flowId, day) =>
    api(`/api/v1/flows/${id(flowId)}/reconciliation`, { method: 'POST', body: day ? { day } : {} }),
  replay: (flowId, reportId) =>
    api(`/api/v1/flows/${id(flowId)}/reconciliation/${id(reportId)}/replay`, { method: 'POST' }),
};

export const ALERT_STATES = ['active', 'open', 'acknowledged', 'resolved'];

export const kindLabel = (kind) => String(kind || '').replace(/_/g, ' ');

/** Seconds → "42 s", "3.5 min", "1.2 h" (— for none). */
export function formatSeconds(value) {
  if (value === null || value === undefined) return '—';
  if (value < 60) return `${Math.round(value)} s`;
  if (value < 3600) return `${(value / 60).toFixed(1)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

export const canHandle = (user) => user && (user.role === 'owner' || user.role === 'admin');
