// The hash-chained audit log: filters, and a check of the chain (owners and admins).
import { useState } from 'react';
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { useApi } from '../useApi.js';
import { gov } from './govApi.js';
import './governance.css';

const PAGE = 50;

export default function AuditPage({ user }) {
  const [draft, setDraft] = useState({ action: '', actor: '', object_type: '', object_id: '' });
  const [filters, setFilters] = useState(draft);
  const [offset, setOffset] = useState(0);
  const [verify, setVerify] = useState(null);
  const [verifying, setVerifying] = useState(false);
  const allowed = user.role === 'owner' || user.role === 'admin';
  const { data, error, loading, reload } = useApi(
    (signal) => (allowed ? gov.audit({ ...filters, limit: PAGE, offset }, { signal }) : Promise.resolve(null)),
    [filters, offset, allowed],
  );
  if (!allowed) {
    return (
      <>
        <PageHeading title="Audit log" />
        <p className="notice">The audit log is for integration owners and admins.</p>
      </>
    );
  }
  async function check() {
    setVerifying(true);
    try {
      setVerify(await gov.verifyAudit());
    } catch (err) {
      setVerify({ error: err });
    } finally {
      setVerifying(false);
    }
  }
  return (
    <>
      <PageHeading title="Audit log">
        <button type="button" className="button" onClick={check} disabled={verifying}>Verify chain</button>
      </PageHeading>
      {verify && !verify.error && (
        <p role="status" className={verify.ok ? 'notice' : 'notice notice-error'}>
          {verify.ok
            ? `Chain intact: ${verify.checked} events verified.`
            : `Chain broken at event ${verify.first_broken_id} (after ${verify.checked} events): a row was changed or removed.`}
        </p>
      )}
      {verify?.error && <ErrorNotice error={verify.error} />}
      <form className="gov-row" onSubmit={(e) => {
        e.preventDefault();
        setOffset(0);
        setFilters(draft);
      }}>
        {[['action', 'Action'], ['actor', 'Actor (e-mail or id)'], ['object_type', 'Object type'], ['object_id', 'Object id']].map(([key, label]) => (
          <label key={key} className="field">
            {label}
            <input value={draft[key]} onChange={(e) => setDraft((d) => ({ ...d, [key]: e.target.value }))} />
          </label>
        ))}
        <button type="submit" className="button button-primary">Filter</button>
      </form>
      {loading && !data && <Loading />}
      <ErrorNotice error={error} onRetry={reload} />
      {data && (
        <div className="card table-card" style={{ marginTop: '0.75rem' }}>
          <table className="table">
            <thead><tr><th>#</th><th>When</th><th>Actor</th><th>Action</th><th>Object</th><th>Detail</th></tr></thead>
            <tbody>
              {data.items.map((e) => (
                <tr key={e.id}>
                  <td>{e.id}</td>
                  <td>{new Date(e.created_at).toLocaleString()}</td>
                  <td>{e.actor_label}</td>
                  <td><code>{e.action}</code></td>
                  <td>{e.object_type}{e.object_id ? ` ${e.object_id}` : ''}</td>
                  <td><code style={{ whiteSpace: 'pre-wrap' }}>{JSON.stringify(e.detail)}</code></td>
                </tr>
              ))}
            </tbody>
          </table>
          <p className="table-footer">
            {data.total} event(s).{' '}
            <button type="button" className="button button-small" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>Newer</button>{' '}
            <button type="button" className="button button-small" disabled={offset + PAGE >= data.total} onClick={() => setOffset(offset + PAGE)}>Older</button>
          </p>
        </div>
      )}
    </>
  );
}
