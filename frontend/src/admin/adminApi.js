// API calls of the admin pages (see app/api/admin.py and app/api/governance.py).
import { api } from '../api.js';

export const adminApi = {
  users: (opts) => api('/api/v1/users', opts),
  createUser: (body) => api('/api/v1/users', { method: 'POST', body }),
  updateUser: (id, body) => api(`/api/v1/users/${encodeURIComponent(id)}`, { method: 'PATCH', body }),
  settings: (opts) => api('/api/v1/settings', opts),
};

export const ROLES = ['analyst', 'owner', 'admin'];
