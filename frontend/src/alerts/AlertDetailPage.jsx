import { formatTime } from '../format.js';
import { useApi } from '../useApi.js';
import Link from '../components/Link.jsx';
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { AlertActions, AlertStateBadge } from './AlertsPage.jsx';
import FlowReliability from './FlowReliability.jsx';
import { alertsApi, formatSeconds, kindLabel } from './api.js';
import './alerts.css';

// E-mails and webhooks go through the notification outbox: pending ones are retrying.
function outcome(n) {
  const tries = n.attempts ? ` after ${n.attempts} attempt${n.attempts === 1 ? '' : 's'}` : '';
  if (n.status === 'sent' || (!n.status && n.ok)) return `sent${n.attempts > 1 ? tries : ''}`;
  if (n.status === 'pending') {
    if (!n.attempts) return 'queued';
    return `retrying${tries} (next ${formatTime(n.next_attempt_at)}): ${n.error || ''}`;
  }
  return `failed${tries}: ${n.error}`;
}

export default function AlertDetailPage({ id, user }) {
  const data = useApi((signal) => alertsApi.get(id, { signal }), [id]);
  const a = data.data;
  return (
    <>
      <PageHeading title={`Alert #${id}`}>
        <Link to="/alerts" className="button button-ghost">All alerts</Link>
      </PageHeading>
      <ErrorNotice error={data.error} onRetry={data.reload} />
      {!a && !data.error && <Loading>Loading the alert…</Loading>}
      {a && (
        <>
          <p className="alert-summary">{a.summary}</p>
          <dl className="card alert-facts">
            <dt>State</dt>
            <dd><AlertStateBadge state={a.state} /> <span className={`severity severity-${a.severity}`}>{a.severity}</span></dd>
            <dt>Flow</dt>
            <dd><Link to={`/flows/${a.flow_id}/edit`}>{a.flow_name}</Link></dd>
            <dt>Rule</dt>
            <dd>{kindLabel(a.kind)}</dd>
            <dt>Failing system</dt>
            <dd>{a.system ?? '—'}</dd>
            <dt>Error</dt>
            <dd><code>{a.error ?? '—'}</code></dd>
            <dt>Failing run</dt>
            <dd>
              {a.run_id ? (
                <Link to={`/runs/${a.run_id}`} className="alert-run-link">
                  Open failing run #{a.run_id} (step input/output)
                </Link>
              ) : '—'}
            </dd>
            <dt>First failure</dt>
            <dd>{formatTime(a.first_failure_at)}</dd>
            <dt>Opened</dt>
            <dd>{formatTime(a.opened_at)} (MTTD {formatSeconds(a.mttd_seconds)})</dd>
            <dt>Acknowledged</dt>
            <dd>{a.acknowledged_at ? `${formatTime(a.acknowledged_at)} by ${a.acknowledged_by}` : '—'}</dd>
            <dt>Escalated</dt>
            <dd>{formatTime(a.escalated_at)}</dd>
            <dt>Resolved</dt>
            <dd>
              {a.resolved_at
                ? `${formatTime(a.resolved_at)} (${a.resolution}; MTTR ${formatSeconds(a.mttr_seconds)})`
                : '—'}
            </dd>
          </dl>
          <AlertActions alert={a} user={user} onChanged={data.reload} />
          <h2>Notifications</h2>
          {a.notifications?.length ? (
            <div className="card table-card">
              <table className="table">
                <caption className="visually-hidden">Notifications sent</caption>
                <thead>
                  <tr>
                    <th scope="col">When</th><th scope="col">Why</th><th scope="col">Channel</th>
                    <th scope="col">To</th><th scope="col">Result</th>
                  </tr>
                </thead>
                <tbody>
                  {a.notifications.map((n, i) => (
                    <tr key={i}>
                      <td>{formatTime(n.sent_at)}</td><td>{n.purpose}</td><td>{n.channel}</td>
                      <td>{n.recipient}</td><td>{outcome(n)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : <p className="muted">None sent.</p>}
          <h2>Reliability of this flow</h2>
          <FlowReliability flowId={a.flow_id} />
        </>
      )}
    </>
  );
}
