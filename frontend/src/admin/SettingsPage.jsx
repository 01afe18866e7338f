// The effective settings, read-only (admins). Secrets are never sent by the server.
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { useApi } from '../useApi.js';
import { AdminTabs, NotAllowed, isAdmin } from './AdminParts.jsx';
import { adminApi } from './adminApi.js';
import './admin.css';

function shown(item) {
  if (item.secret) {
    return <span className="admin-secret">{item.value ? 'configured (hidden)' : 'not set'}</span>;
  }
  if (item.value === null || item.value === undefined) return <span className="muted">not set</span>;
  if (Array.isArray(item.value)) {
    return item.value.length ? <code>{item.value.join(', ')}</code> : <span className="muted">none</span>;
  }
  return <code>{String(item.value)}</code>;
}

export default function SettingsPage({ user, path }) {
  const allowed = isAdmin(user);
  const { data, error, loading, reload } = useApi(
    (signal) => (allowed ? adminApi.settings({ signal }) : Promise.resolve(null)),
    [allowed],
  );
  if (!allowed) return <NotAllowed title="Settings" />;
  return (
    <>
      <PageHeading title="Settings" />
      <AdminTabs path={path} />
      <p className="muted">
        Read-only: set through FLOWGATE_* environment variables and a restart. Addresses are shown without
        credentials, webhooks by host only, secrets never.
      </p>
      {loading && !data && <Loading />}
      <ErrorNotice error={error} onRetry={reload} />
      {data && (
        <div className="card table-card admin-settings">
          <table className="table" aria-label="Settings">
            <thead>
              <tr><th>Setting</th><th>Value</th><th>What it does</th></tr>
            </thead>
            <tbody>
              {data.items.map((item) => (
                <tr key={item.key}>
                  <th scope="row"><code>{item.key}</code></th>
                  <td>{shown(item)}</td>
                  <td>{item.description}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
