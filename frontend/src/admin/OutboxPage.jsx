// The notification outbox (admins): e-mails and webhooks, retrying, sent or given up, and
// "Retry now" for the ones that gave up. The scheduler sends within a few seconds.
import { useState } from 'react';
import Link from '../components/Link.jsx';
import PageHeading from '../components/PageHeading.jsx';
import StatusBadge from '../components/StatusBadge.jsx';
import { ErrorNotice, Loading, problemErrors } from '../components/Notice.jsx';
import { formatTime } from '../format.js';
import { useApi } from '../useApi.js';
import { AdminTabs, NotAllowed, isAdmin } from './AdminParts.jsx';
import { adminApi } from './adminApi.js';
import './admin.css';

const FILTERS = [
  { value: 'failed', label: 'Failed (gave up)' },
  { value: 'pending', label: 'Pending (retrying)' },
  { value: 'sent', label: 'Sent' },
  { value: '', label: 'All' },
];
const LIMIT = 100;

function errorText(err) {
  const lines = problemErrors(err);
  return lines.length ? `${err.message} (${lines.join('; ')})` : err.message;
}

function RetryButton({ row, onRetried }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function retry() {
    setBusy(true);
    setError(null);
    try {
      onRetried(await adminApi.retryOutbox(row.id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <>
      <button type="button" className="button button-small" disabled={busy} onClick={retry}>
        {busy ? 'Retrying…' : 'Retry now'}
        <span className="visually-hidden"> notification {row.id} to {row.recipient}</span>
      </button>
      {error && <span className="admin-row-error" role="alert">{errorText(error)}</span>}
    </>
  );
}

function OutboxRow({ row, onRetried }) {
  return (
    <tr>
      <td>{formatTime(row.created_at)}</td>
      <td>{row.link ? <Link to={row.link}>{row.purpose}</Link> : row.purpose}</td>
      <td>{row.channel}</td>
      <td className="admin-outbox-to">{row.recipient}<div className="muted">{row.subject}</div></td>
      <td><StatusBadge status={row.status} /></td>
      <td>{row.attempts} / {row.max_attempts}</td>
      <td>
        {row.status === 'sent' && formatTime(row.sent_at)}
        {row.status === 'pending' && <>next {formatTime(row.next_attempt_at)}</>}
        {row.status === 'failed' && <span className="muted">gave up</span>}
      </td>
      <td className="admin-outbox-error">{row.last_error || <span className="muted">—</span>}</td>
      <td>{row.status === 'failed' && <RetryButton row={row} onRetried={onRetried} />}</td>
    </tr>
  );
}

export default function OutboxPage({ user, path }) {
  const allowed = isAdmin(user);
  const [filter, setFilter] = useState('failed');
  const [status, setStatus] = useState('');
  const { data, error, loading, reload } = useApi(
    (signal) => (allowed ? adminApi.outbox({ status: filter, limit: LIMIT }, { signal }) : Promise.resolve(null)),
    [allowed, filter],
  );
  if (!allowed) return <NotAllowed title="Outbox" />;
  const counts = data?.counts || {};
  return (
    <>
      <PageHeading title="Outbox" />
      <AdminTabs path={path} />
      <p className="muted">
        Every alert and review e-mail or webhook waits here until it is delivered. Failed attempts are retried
        after 30 s, 2 min, 10 min, 30 min and 2 h; then the notification gives up and is listed as failed.
        Webhooks are shown by host only.
      </p>
      <div className="admin-outbox-bar">
        <label className="field">
          Show
          <select value={filter} onChange={(e) => setFilter(e.target.value)}>
            {FILTERS.map((f) => <option key={f.value} value={f.value}>{f.label}</option>)}
          </select>
        </label>
        {data && (
          <p className="muted" aria-label="Counts">
            {counts.failed ?? 0} failed · {counts.pending ?? 0} pending · {counts.sent ?? 0} sent
          </p>
        )}
        <button type="button" className="button button-small" onClick={reload}>Refresh</button>
      </div>
      <p role="status" className="muted">{status}</p>
      {loading && !data && <Loading />}
      <ErrorNotice error={error} onRetry={reload} />
      {data && (data.items.length ? (
        <div className="card table-card admin-outbox">
          <table className="table" aria-label="Notifications">
            <thead>
              <tr>
                <th>Queued</th><th>About</th><th>Channel</th><th>To</th><th>Status</th><th>Attempts</th>
                <th>When</th><th>Last error</th><th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {data.items.map((row) => (
                <OutboxRow
                  key={row.id}
                  row={row}
                  onRetried={(updated) => {
                    setStatus(`Notification ${updated.id} to ${updated.recipient} will be sent within seconds.`);
                    reload();
                  }}
                />
              ))}
            </tbody>
          </table>
          <p className="table-footer">
            {data.items.length < data.total ? `The newest ${data.items.length} of ${data.total}.` : `${data.total} notification(s).`}
          </p>
        </div>
      ) : <p className="muted">No notifications{filter ? ` ${filter}` : ''}.</p>)}
    </>
  );
}
