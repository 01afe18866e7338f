import { api } from '../api.js';
import FlowReliability from '../alerts/FlowReliability.jsx';
import Sparkline from '../dashboard/Sparkline.jsx';
import { formatTime, statusLabel } from '../format.js';
import Link from '../components/Link.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import PageHeading from '../components/PageHeading.jsx';
import StatusBadge from '../components/StatusBadge.jsx';
import { useApi } from '../useApi.js';
import TriggerState from './TriggerState.jsx';
import './flow.css';

const dash = <span className="muted">—</span>;
const percent = (v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`);
const seconds = (v) => (v === null || v === undefined ? '—' : `${v < 10 ? v.toFixed(2) : Math.round(v)} s`);

/** Health of the flow (runs, success, dead letters, latency, backlog, breaker); none if the
 * server has no health endpoint. */
function FlowHealth({ flowId }) {
  const { data, error, reload } = useApi(
    (signal) => api(`/api/v1/flows/${encodeURIComponent(flowId)}/health`, { signal }).catch((err) => {
      if (err.status === 404) return { missing: true }; // no health endpoint on this server
      throw err;
    }),
    [flowId],
  );
  if (error) return <ErrorNotice error={error} onRetry={reload} lead="The health figures could not be loaded." />;
  if (data === null) return <Loading>Loading health…</Loading>;
  if (data.missing) return <p className="muted">No health figures are available for this flow.</p>;
  const h = data;
  const figures = [
    ['Messages / min (last hour)', h.messages_per_minute?.toFixed?.(2) ?? '—'],
    ['Runs (last hour)', `${h.runs_last_hour ?? 0} (${h.failed_last_hour ?? 0} failed)`],
    ['Success rate (last hour)', percent(h.success_rate)],
    ['Dead letters', h.dead_letters ?? 0],
    ['Backlog', h.backlog ?? 0],
    ['Latency p50 / p95', `${seconds(h.latency_p50_seconds)} / ${seconds(h.latency_p95_seconds)}`],
    ['Breaker', statusLabel(h.breaker)],
    ['Last success', h.last_success_at ? formatTime(h.last_success_at) : '—'],
  ];
  return (
    <section className="card" aria-label="Health">
      <dl className="flow-facts">
        {figures.map(([label, value]) => (
          <div key={label}><dt>{label}</dt><dd>{value}</dd></div>
        ))}
      </dl>
      {h.sparklines && (
        <div className="flow-health-sparks">
          {[['24h', 'Last 24 hours'], ['7d', 'Last 7 days']].map(([key, label]) => h.sparklines[key] && (
            <figure key={key}>
              <Sparkline runs={h.sparklines[key].runs ?? []} failed={h.sparklines[key].failed ?? []} label={label} />
              <figcaption>{label}</figcaption>
            </figure>
          ))}
        </div>
      )}
    </section>
  );
}

function Versions({ flow }) {
  const versions = [...(flow.versions ?? [])].sort((a, b) => b.number - a.number);
  if (!versions.length) return <p className="muted">No versions yet: open the editor to start a draft.</p>;
  return (
    <div className="card table-card">
      <table className="table">
        <caption className="visually-hidden">Versions</caption>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
            <th scope="col"><span className="visually-hidden">Actions</span></th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.number}>
              <td>v{v.number}{v.status === 'draft' && <span className="muted small"> · rev {v.revision}</span>}</td>
              <td><StatusBadge status={v.status} /></td>
              <td>{formatTime(v.created_at)}</td>
              <td className="align-right">
                {v.status === 'draft' ? (
                  <Link to={`/flows/${flow.id}/edit`} aria-label={`Edit draft v${v.number}`}>Edit draft</Link>
                ) : (
                  <Link to={`/reviews/${flow.id}/${v.number}`} aria-label={`Review page of v${v.number}`}>Review page</Link>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** One flow: who owns it, its versions and their review pages, health, MTTD/MTTR, alerts. */
export default function FlowPage({ flowId }) {
  const { data: flow, error, loading, reload } = useApi(
    (signal) => api(`/api/v1/flows/${encodeURIComponent(flowId)}`, { signal }),
    [flowId],
  );
  if (error) return <ErrorNotice error={error} onRetry={reload} lead="The flow could not be loaded." />;
  if (loading && !flow) return <Loading>Loading the flow…</Loading>;
  const live = flow.live_version !== null && flow.live_version !== undefined;
  const inReview = (flow.versions ?? []).filter((v) => v.status === 'in_review');
  return (
    <div className="flow-page">
      <p><Link to="/flows">← Flows</Link></p>
      <PageHeading title={flow.name}>
        <Link to={`/runs?flow=${encodeURIComponent(flow.id)}`} className="button">Recent runs</Link>
        <Link to={`/flows/${flow.id}/edit`} className="button button-primary">Edit</Link>
      </PageHeading>
      {flow.description && <p className="muted">{flow.description}</p>}
      <section className="card" aria-label="Overview">
        <dl className="flow-facts">
          <div><dt>Owner</dt><dd>{flow.owner ? (flow.owner.name || flow.owner.email) : dash}</dd></div>
          <div>
            <dt>Live version</dt>
            <dd data-testid="live-version">
              {live ? <Link to={`/reviews/${flow.id}/${flow.live_version}`}>v{flow.live_version}</Link> : 'None yet'}
            </dd>
          </div>
          <div>
            <dt>In review</dt>
            <dd>{inReview.length ? inReview.map((v) => `v${v.number}`).join(', ') : dash}</dd>
          </div>
          <div><dt>Slug</dt><dd><code>{flow.slug}</code></dd></div>
          <div><dt>Webhook</dt><dd>{live && flow.webhook_path ? <code>{flow.webhook_path}</code> : dash}</dd></div>
          <div>
            <dt>Last run</dt>
            <dd>
              {flow.last_run ? (
                <Link to={`/runs/${flow.last_run.id}`} aria-label={`Last run: ${flow.last_run.status}`}>
                  <StatusBadge status={flow.last_run.status} /> {formatTime(flow.last_run.received_at)}
                </Link>
              ) : 'Never run'}
            </dd>
          </div>
        </dl>
      </section>

      <h2 className="flow-section-title">Trigger</h2>
      <TriggerState flowId={flow.id} />

      <h2 className="flow-section-title">Health</h2>
      <FlowHealth flowId={flow.id} />

      <h2 className="flow-section-title">Reliability and open alerts</h2>
      <FlowReliability flowId={flow.id} />
      <p className="small"><Link to={`/alerts?flow=${encodeURIComponent(flow.id)}`}>All alerts of this flow</Link></p>

      <h2 className="flow-section-title">Versions</h2>
      <Versions flow={flow} />
    </div>
  );
}
