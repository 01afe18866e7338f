// API calls of the admin pages (see app/api/admin.py and app/api/governance.py).
import { api } from '../api.js';

export const adminApi = {
  users: (opts) => api('/api/v1/users', opts),
  createUser: (body) => api('/api/v1/users', { method: 'POST', body }),
  updateUser: (id, body) => api(`/api/v1/users/${encodeURIComponent(id)}`, { method: 'PATCH', body }),
  settings: (opts) => api('/api/v1/settings', opts),
  outbox: (query, opts) => {
    const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v != null));
    return api(`/api/v1/outbox?${params}`, opts);
  },
  retryOutbox: (id) => api(`/api/v1/outbox/${encodeURIComponent(id)}/retry`, { method: 'POST' }),
};

export const ROLES = ['analyst', 'owner', 'admin'];
