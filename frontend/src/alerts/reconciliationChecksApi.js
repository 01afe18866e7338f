// API helpers for a flow's external reconciliation checks (HTTP or SQL).
import { api } from '../api.js';

const id = (value) => encodeURIComponent(value);

export const reconciliationChecksApi = {
  list: (flowId, opts) => api(`/api/v1/flows/${id(flowId)}/reconciliation/checks`, opts),
  save: (flowId, checks) =>
    api(`/api/v1/flows/${id(flowId)}/reconciliation/checks`, { method: 'PUT', body: { checks } }),
};

/** Connector keys whose connections each kind of check can read. */
export const CHECK_CONNECTORS = { http: ['http', 'poll_http'], sql: ['sql', 'poll_sql'] };

export const SQL_HINT =
  'One SELECT, read-only. Parameters: :day (the date), :day_start and :day_end (the day\'s bounds in UTC).';

export function blankCheck(kind = 'sql') {
  return {
    name: '',
    side: 'destination',
    kind,
    mode: 'ids',
    connection_id: '',
    path: '/',
    query: {},
    sql: kind === 'sql' ? 'SELECT ref FROM orders WHERE placed_at >= :day_start AND placed_at < :day_end' : null,
    ids_expression: kind === 'sql' ? 'ref' : 'items.id',
    step_id: null,
    tolerance: 0,
    enabled: true,
  };
}

/** The body the API takes: only the fields of the check's kind, numbers as numbers. */
export function toPayload(check) {
  const body = {
    name: check.name.trim(),
    side: check.side,
    kind: check.kind,
    mode: check.mode,
    connection_id: Number(check.connection_id),
    ids_expression: check.ids_expression,
    step_id: check.side === 'destination' && check.step_id ? check.step_id : null,
    tolerance: Number(check.tolerance) || 0,
    enabled: Boolean(check.enabled),
  };
  if (check.kind === 'sql') return { ...body, sql: check.sql };
  return { ...body, path: check.path || '/', query: check.query || {} };
}
