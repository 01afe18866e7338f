import { useState } from 'react';
import { flows } from '../api.js';
import { formatTime } from '../format.js';
import { navigate } from '../router.js';
import { useApi } from '../useApi.js';
import Link from '../components/Link.jsx';
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import FlowReliability from './FlowReliability.jsx';
import ReconciliationChecks from './ReconciliationChecks.jsx';
import { canHandle, reconciliationApi } from './api.js';
import './alerts.css';
import './reconciliation.css';

const TOTALS = ['received', 'delivered', 'filtered', 'dead_lettered', 'pending', 'rejected', 'difference'];

function replayLabel(dead, missing) {
  const parts = [];
  if (dead > 0) parts.push(`replay ${dead} dead letter(s)`);
  if (missing > 0) parts.push(`re-send ${missing} missing id(s)`);
  const text = parts.join(' and ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function ExternalResult({ result: e }) {
  const how = `${e.kind === 'sql' ? 'SQL' : 'HTTP'}${e.mode === 'count' ? ', count' : ''}`;
  return (
    <p className="recon-external">
      <strong>{e.name}</strong> ({e.side}, {how}):{' '}
      {e.error ? <span className="recon-bad">{e.error}</span> : (
        <>
          {e.ok ? <span className="recon-ok">ok</span> : <span className="recon-bad">mismatch</span>}
          {' '}ours {e.expected}, theirs {e.actual}
          {e.tolerance > 0 && <> (tolerance {e.tolerance})</>}
          {e.missing?.length > 0 && <> · missing there: <code>{e.missing.join(', ')}</code></>}
          {e.unexpected?.length > 0 && <> · unknown to us: <code>{e.unexpected.join(', ')}</code></>}
          {e.ids_listed === false && <> · <span className="recon-note">{e.note}</span></>}
        </>
      )}
    </p>
  );
}

function Report({ report, flowId, user, onReplayed }) {
  const [state, setState] = useState({ busy: false, error: null, result: null });
  const { totals, destinations = [], differences = [], external = [] } = report.result;
  const dead = differences.filter((d) => d.status === 'dead_lettered').length;
  const missing = new Set(
    external.filter((e) => e.side === 'destination' && !e.error).flatMap((e) => e.missing ?? []),
  ).size;
  async function replay() {
    setState({ busy: true, error: null, result: null });
    try {
      const result = await reconciliationApi.replay(flowId, report.id);
      setState({ busy: false, error: null, result });
      onReplayed();
    } catch (error) {
      setState({ busy: false, error, result: null });
    }
  }
  return (
    <article className="card recon-report" aria-label={`Reconciliation of ${report.day}`}>
      <h3>
        {report.day}{' '}
        <span className={report.ok ? 'recon-ok' : 'recon-bad'}>
          {report.ok ? 'no differences' : `${report.differences} difference(s)`}
        </span>{' '}
        <span className="muted small">{report.trigger.replace('_', ' ')} · {formatTime(report.created_at)}</span>
      </h3>
      <div className="recon-totals">
        {TOTALS.map((k) => (
          <div key={k}><strong>{totals[k]}</strong><span className="muted small">{k.replace('_', ' ')}</span></div>
        ))}
      </div>
      {destinations.length > 0 && (
        <table className="table">
          <caption>Per destination</caption>
          <thead><tr><th scope="col">Step</th><th scope="col">System</th><th scope="col">Delivered</th><th scope="col">Dead-lettered</th><th scope="col">Pending</th></tr></thead>
          <tbody>
            {destinations.map((d) => (
              <tr key={d.step_id}>
                <td><code>{d.step_id}</code></td><td>{d.system ?? d.connection ?? '—'}</td>
                <td>{d.delivered}</td><td>{d.dead_lettered}</td><td>{d.pending}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {differences.length > 0 && (
        <table className="table">
          <caption>Differences by business key</caption>
          <thead><tr><th scope="col">Business key</th><th scope="col">Run</th><th scope="col">Status</th><th scope="col">Reason</th></tr></thead>
          <tbody>
            {differences.map((d) => (
              <tr key={d.run_id}>
                <td><code>{d.business_key ?? '—'}</code></td>
                <td><Link to={`/runs/${d.run_id}`}>#{d.run_id}</Link></td>
                <td>{d.status}</td><td>{d.reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {external.map((e) => <ExternalResult key={e.check_id} result={e} />)}
      {(dead > 0 || missing > 0) && user?.role === 'owner' && (
        <button type="button" className="button button-primary" onClick={replay} disabled={state.busy}>
          {replayLabel(dead, missing)}
        </button>
      )}
      {state.result && (
        <p role="status">
          {state.result.replayed} dead letter(s) queued again, {state.result.resent ?? 0} missing
          id(s) re-sent. Reconcile again once they finish.
        </p>
      )}
      <ErrorNotice error={state.error} />
    </article>
  );
}

export default function ReconciliationPage({ query, user }) {
  const flowId = query.get('flow') || '';
  const [day, setDay] = useState('');
  const [running, setRunning] = useState({ busy: false, error: null });
  const flowList = useApi((signal) => flows.list({ signal }), []);
  const reports = useApi(
    (signal) => (flowId ? reconciliationApi.list(flowId, { signal }) : Promise.resolve({ items: [] })),
    [flowId],
  );
  const options = flowList.data?.items ?? [];
  async function runNow() {
    setRunning({ busy: true, error: null });
    try {
      await reconciliationApi.run(flowId, day || undefined);
      setRunning({ busy: false, error: null });
      reports.reload();
    } catch (error) {
      setRunning({ busy: false, error });
    }
  }
  return (
    <>
      <PageHeading title="Reconciliation" />
      <form className="filters card" aria-label="Choose a flow" onSubmit={(e) => { e.preventDefault(); runNow(); }}>
        <label className="field">
          <span>Flow</span>
          <select value={flowId} onChange={(e) => navigate(`/reconciliation?flow=${e.target.value}`, { replace: true })}>
            <option value="">Choose a flow</option>
            {options.map((f) => <option key={f.id} value={String(f.id)}>{f.name}</option>)}
          </select>
        </label>
        <label className="field">
          <span>Day</span>
          <input type="date" value={day} onChange={(e) => setDay(e.target.value)} />
        </label>
        {canHandle(user) && (
          <div className="filter-buttons">
            <button type="submit" className="button button-primary" disabled={!flowId || running.busy}>
              Reconcile now
            </button>
          </div>
        )}
      </form>
      <ErrorNotice error={running.error || flowList.error || reports.error} />
      {flowId && <FlowReliability flowId={flowId} />}
      {flowId && <ReconciliationChecks key={flowId} flowId={flowId} canEdit={canHandle(user)} />}
      {flowId && reports.loading && !reports.data && <Loading>Loading reports…</Loading>}
      {flowId && reports.data && (reports.data.items.length === 0
        ? <p className="empty card">No reconciliation yet for this flow.</p>
        : reports.data.items.map((r) => (
          <Report key={r.id} report={r} flowId={flowId} user={user} onReplayed={reports.reload} />
        )))}
    </>
  );
}
