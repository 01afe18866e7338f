// API helpers for the landscape pages (systems, map, risks, export) and the dashboard.
import { api, withQuery } from '../api.js';

export const SYSTEM_KINDS = [
  ['commerce', 'Commerce'],
  ['erp', 'ERP'],
  ['oms', 'OMS'],
  ['wms', 'WMS'],
  ['crm', 'CRM'],
  ['pim', 'PIM'],
  ['loyalty', 'Loyalty'],
  ['marketing', 'Marketing'],
  ['service', 'Service desk'],
  ['other', 'Other'],
];
export const CRITICALITIES = ['low', 'medium', 'high', 'critical'];
export const kindLabel = (kind) => SYSTEM_KINDS.find(([k]) => k === kind)?.[1] ?? kind;

export const systems = {
  list: (opts) => api('/api/v1/systems', opts),
  create: (body, opts) => api('/api/v1/systems', { method: 'POST', body, ...opts }),
  update: (id, body, opts) => api(`/api/v1/systems/${encodeURIComponent(id)}`, { method: 'PATCH', body, ...opts }),
  remove: (id, opts) => api(`/api/v1/systems/${encodeURIComponent(id)}`, { method: 'DELETE', ...opts }),
};

export const users = {
  list: (opts) => api('/api/v1/users', opts),
};

export const landscape = {
  get: (opts) => api('/api/v1/landscape', opts),
  exportUrl: (format, table) => withQuery('/api/v1/landscape/export', { format, table }),
};

export const dashboard = {
  get: (opts) => api('/api/v1/dashboard', opts),
  flow: (id, opts) => api(`/api/v1/flows/${encodeURIComponent(id)}/health`, opts),
};
