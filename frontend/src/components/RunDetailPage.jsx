import { useEffect } from 'react';
import { runs } from '../api.js';
import { formatDuration, formatTime, prettyJson } from '../format.js';
import { useApi } from '../useApi.js';
import JsonBlock from './JsonBlock.jsx';
import Link from './Link.jsx';
import PageHeading from './PageHeading.jsx';
import StatusBadge from './StatusBadge.jsx';
import { ErrorNotice, Loading } from './Notice.jsx';
import './runs.css';

const ACTIVE = new Set(['queued', 'running', 'retrying']);

function elapsedMs(from, to) {
  const a = Date.parse(from || '');
  const b = Date.parse(to || '');
  return Number.isNaN(a) || Number.isNaN(b) ? null : Math.max(0, b - a);
}

const stepAnchor = (step, index) => `step-${index + 1}-${String(step.step_id).replace(/[^A-Za-z0-9_-]/g, '_')}`;
const dash = (v) => (v === null || v === undefined || v === '' ? <span className="muted">—</span> : v);

function Summary({ run }) {
  const rows = [
    ['Flow', <>{dash(run.flow_name)}{run.flow_version != null && <span className="muted"> v{run.flow_version}</span>}</>],
    ['Status', <StatusBadge status={run.status} />],
    ['Trigger', dash(run.trigger_kind)],
    ['Business key', run.business_key ? <code>{run.business_key}</code> : dash(null)],
    ['Attempts', dash(run.attempts)],
    ['Received', <span title={run.received_at || undefined}>{formatTime(run.received_at)}</span>],
    ['Finished', <span title={run.finished_at || undefined}>{formatTime(run.finished_at)}</span>],
    ['End to end', dash(run.finished_at ? formatDuration(elapsedMs(run.received_at, run.finished_at)) : null)],
  ];
  return (
    <dl className="summary card">
      {rows.map(([label, value]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

/** The steps at a glance, in the order they ran, with their share of the run's time. */
function Timeline({ steps }) {
  const total = steps.reduce((sum, s) => sum + (Number(s.duration_ms) || 0), 0);
  return (
    <ol className="run-timeline" aria-label="Step timeline">
      {steps.map((step, i) => {
        const share = total > 0 ? Math.max(2, ((Number(step.duration_ms) || 0) / total) * 100) : 0;
        return (
          <li key={`${step.step_id}-${i}`} className={`run-timeline-step is-${String(step.status).toLowerCase()}`}>
            <a href={`#${stepAnchor(step, i)}`}>
              <span className="run-timeline-name">
                <span className="step-index" aria-hidden="true">{i + 1}</span>
                <code>{step.step_id}</code>
              </span>
              <StatusBadge status={step.status} />
              <span className="run-timeline-time">{formatDuration(step.duration_ms)}</span>
              <span className="run-timeline-bar" aria-hidden="true">
                <span style={{ width: `${share}%` }} />
              </span>
            </a>
          </li>
        );
      })}
    </ol>
  );
}

function Step({ step, index }) {
  const hasError = step.error !== null && step.error !== undefined;
  return (
    <li className="card step" id={stepAnchor(step, index)}>
      <div className="step-header">
        <span className="step-index" aria-hidden="true">{index + 1}</span>
        <h3><code>{step.step_id}</code></h3>
        <StatusBadge status={step.status} />
        <span className="muted step-duration" title="Duration">{formatDuration(step.duration_ms)}</span>
      </div>
      <div className={`step-io${hasError ? ' has-error' : ''}`}>
        <JsonBlock label="Input" value={step.input} />
        <JsonBlock label="Output" value={step.output} />
        {hasError && <JsonBlock label="Error" value={step.error} tone="error" />}
      </div>
      {step.attempt > 1 && <p className="muted small step-attempt">Recorded on attempt {step.attempt}</p>}
    </li>
  );
}

function Deliveries({ deliveries }) {
  if (!deliveries.length) return <p className="empty card">No outbound deliveries.</p>;
  return (
    <div className="card table-card">
      <table className="table">
        <caption className="visually-hidden">Deliveries</caption>
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">Idempotency key</th>
            <th scope="col">Status</th>
            <th scope="col" className="align-right">Attempts</th>
            <th scope="col" className="align-right">Response code</th>
            <th scope="col">Last error</th>
          </tr>
        </thead>
        <tbody>
          {deliveries.map((d, i) => (
            <tr key={`${d.step_id}-${d.idempotency_key}-${i}`}>
              <td><code>{d.step_id}</code></td>
              <td><code className="break">{d.idempotency_key}</code></td>
              <td><StatusBadge status={d.status} /></td>
              <td className="align-right">{dash(d.attempts)}</td>
              <td className="align-right" title={d.response_excerpt || undefined}>{dash(d.response_code)}</td>
              <td className="small">{d.last_error ? <span className="text-error">{d.last_error}</span> : dash(null)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export default function RunDetailPage({ id }) {
  const { data: run, error, loading, reload } = useApi((signal) => runs.get(id, { signal }), [id]);
  const active = run && ACTIVE.has(run.status);

  // While the run is still moving, look again every few seconds.
  useEffect(() => {
    if (!active) return undefined;
    const timer = setTimeout(reload, 3000);
    return () => clearTimeout(timer);
  }, [active, run, reload]);

  return (
    <>
      <p className="breadcrumb">
        <Link to="/runs">← All runs</Link>
      </p>
      <PageHeading title={`Run #${id}`}>
        {run && (
          <>
            <Link className="button" to={`/runs?flow=${encodeURIComponent(run.flow_id)}`}>
              Runs of this flow
            </Link>
            <Link className="button" to={`/flows/${encodeURIComponent(run.flow_id)}/edit`}>
              Open flow
            </Link>
          </>
        )}
        <button type="button" className="button" onClick={reload} disabled={loading}>
          Refresh
        </button>
      </PageHeading>
      <ErrorNotice error={error} onRetry={error?.status === 404 ? undefined : reload} />
      {loading && !run && <Loading>Loading run…</Loading>}
      {run && (
        <div className="run-detail">
          <Summary run={run} />
          {run.error !== null && run.error !== undefined && run.error !== '' && (
            <div className="notice notice-error">
              <strong>Run error</strong>
              <pre>{typeof run.error === 'string' ? run.error : prettyJson(run.error)}</pre>
            </div>
          )}

          <section aria-labelledby="payload-title">
            <details className="card payload">
              <summary><h2 id="payload-title">Payload</h2></summary>
              <pre tabIndex={0}>{run.payload === undefined || run.payload === null ? 'none' : prettyJson(run.payload)}</pre>
            </details>
          </section>

          <section aria-labelledby="steps-title">
            <h2 id="steps-title">Steps <span className="count">{run.steps?.length ?? 0}</span></h2>
            {run.steps?.length > 0 && <Timeline steps={run.steps} />}
            {run.steps?.length ? (
              <ol className="steps">
                {run.steps.map((step, i) => (
                  <Step key={`${step.step_id}-${i}`} step={step} index={i} />
                ))}
              </ol>
            ) : (
              <p className="empty card">No steps recorded{active ? ' yet' : ''}.</p>
            )}
          </section>

          <section aria-labelledby="deliveries-title">
            <h2 id="deliveries-title">Deliveries <span className="count">{run.deliveries?.length ?? 0}</span></h2>
            <Deliveries deliveries={run.deliveries ?? []} />
          </section>
        </div>
      )}
    </>
  );
}
