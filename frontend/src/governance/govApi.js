// API calls of the review gate, audit log and notifications (see app/api/governance.py).
import { api, withQuery } from '../api.js';

const version = (flowId, number) =>
  `/api/v1/flows/${encodeURIComponent(flowId)}/versions/${encodeURIComponent(number)}`;

export const gov = {
  reviews: (status = 'in_review', opts) => api(withQuery('/api/v1/reviews', { status }), opts),
  flow: (flowId, opts) => api(`/api/v1/flows/${encodeURIComponent(flowId)}`, opts),
  version: (flowId, number, opts) => api(version(flowId, number), opts),
  review: (flowId, number, opts) => api(`${version(flowId, number)}/review`, opts),
  saveContract: (flowId, number, contract) =>
    api(`${version(flowId, number)}/contract`, { method: 'PUT', body: { contract } }),
  submit: (flowId, number, contract) =>
    api(`${version(flowId, number)}/submit`, { method: 'POST', body: contract ? { contract } : {} }),
  approve: (flowId, number, comment) =>
    api(`${version(flowId, number)}/approve`, { method: 'POST', body: { comment } }),
  reject: (flowId, number, comment) =>
    api(`${version(flowId, number)}/reject`, { method: 'POST', body: { comment } }),
  withdraw: (flowId, number) => api(`${version(flowId, number)}/withdraw`, { method: 'POST' }),
  comments: (flowId, number, opts) => api(`${version(flowId, number)}/comments`, opts),
  addComment: (flowId, number, body) =>
    api(`${version(flowId, number)}/comments`, { method: 'POST', body: { body } }),
  systems: (opts) => api('/api/v1/systems', opts),
  users: (opts) => api('/api/v1/users', opts),
  notifications: (opts) => api('/api/v1/notifications', opts),
  readNotification: (id) => api(`/api/v1/notifications/${encodeURIComponent(id)}/read`, { method: 'POST' }),
  readAll: () => api('/api/v1/notifications/read', { method: 'POST' }),
  audit: (filters, opts) => api(withQuery('/api/v1/audit', filters), opts),
  verifyAudit: (opts) => api('/api/v1/audit/verify', opts),
};
