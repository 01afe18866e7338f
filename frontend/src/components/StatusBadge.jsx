import { statusLabel } from '../format.js';

export default function StatusBadge({ status }) {
  const key = String(status || 'unknown').toLowerCase().replace(/[^a-z0-9_-]/g, '');
  return <span className={`badge badge-${key}`}>{statusLabel(status)}</span>;
}
