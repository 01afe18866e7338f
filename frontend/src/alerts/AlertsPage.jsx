import { useState } from 'react';
import { formatTime } from '../format.js';
import { navigate } from '../router.js';
import { useApi } from '../useApi.js';
import Link from '../components/Link.jsx';
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { ALERT_STATES, alertsApi, canHandle, kindLabel } from './api.js';
import './alerts.css';

export function AlertStateBadge({ state }) {
  return <span className={`badge badge-${state} alert-state`}>{state}</span>;
}

export function AlertActions({ alert, user, onChanged }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  if (!canHandle(user) || alert.state === 'resolved') return null;
  async function act(call) {
    setBusy(true);
    setError(null);
    try {
      onChanged(await call(alert.id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div className="alert-actions">
      {alert.state === 'open' && (
        <button type="button" className="button button-small" disabled={busy}
          aria-label={`Acknowledge alert #${alert.id}`} onClick={() => act(alertsApi.acknowledge)}>
          Acknowledge
        </button>
      )}
      <button type="button" className="button button-small" disabled={busy}
        aria-label={`Resolve alert #${alert.id}`} onClick={() => act(alertsApi.resolve)}>
        Resolve
      </button>
      <ErrorNotice error={error} />
    </div>
  );
}

export default function AlertsPage({ query, user }) {
  const state = query.get('state') ?? 'active';
  const flow = query.get('flow') || '';
  const list = useApi(
    (signal) => alertsApi.list({ state: state === 'all' ? '' : state, flow }, { signal }),
    [state, flow],
  );
  const items = list.data?.items ?? [];
  return (
    <>
      <PageHeading title="Alerts">
        <Link to="/reconciliation" className="button button-ghost">Reconciliation</Link>
        <button type="button" className="button" onClick={list.reload} disabled={list.loading}>
          Refresh
        </button>
      </PageHeading>
      <form className="filters card" aria-label="Filter alerts" onSubmit={(e) => e.preventDefault()}>
        <label className="field">
          <span>State</span>
          <select value={state} onChange={(e) => navigate(`/alerts?state=${e.target.value}${flow ? `&flow=${flow}` : ''}`, { replace: true })}>
            {[...ALERT_STATES, 'all'].map((s) => (
              <option key={s} value={s}>{s === 'active' ? 'open + acknowledged' : s}</option>
            ))}
          </select>
        </label>
      </form>
      <ErrorNotice error={list.error} onRetry={list.reload} />
      {list.loading && !list.data && <Loading>Loading alerts…</Loading>}
      {list.data && (
        <div className="card table-card">
          {items.length === 0 ? (
            <p className="empty">No alerts in this state.</p>
          ) : (
            <table className="table">
              <caption className="visually-hidden">Alerts</caption>
              <thead>
                <tr>
                  <th scope="col">Alert</th>
                  <th scope="col">Flow</th>
                  <th scope="col">Rule</th>
                  <th scope="col">Failing system</th>
                  <th scope="col">State</th>
                  <th scope="col">Opened</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {items.map((a) => (
                  <tr key={a.id}>
                    <td>
                      <Link to={`/alerts/${a.id}`} className="strong">#{a.id}</Link>{' '}
                      <span className={`severity severity-${a.severity}`}>{a.severity}</span>
                    </td>
                    <td>{a.flow_name}</td>
                    <td>{kindLabel(a.kind)}</td>
                    <td>{a.system ?? <span className="muted">—</span>}</td>
                    <td><AlertStateBadge state={a.state} /></td>
                    <td title={a.opened_at}>{formatTime(a.opened_at)}</td>
                    <td><AlertActions alert={a} user={user} onChanged={list.reload} /></td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
    </>
  );
}
