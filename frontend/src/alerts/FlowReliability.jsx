import { useApi } from '../useApi.js';
import Link from '../components/Link.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { alertsApi, formatSeconds, kindLabel } from './api.js';
import './alerts.css';

/** MTTD / MTTR of one flow over 30 days, and its alerts not resolved yet. */
export default function FlowReliability({ flowId }) {
  const data = useApi((signal) => alertsApi.reliability(flowId, { signal }), [flowId]);
  if (data.error) return <ErrorNotice error={data.error} onRetry={data.reload} />;
  if (!data.data) return <Loading>Loading reliability…</Loading>;
  const r = data.data;
  return (
    <section className="card" aria-label="Reliability">
      <div className="reliability">
        <div className="reliability-figure">
          <strong data-testid="mttd-last">{formatSeconds(r.mttd_seconds_last)}</strong>
          <span>MTTD, last (avg {formatSeconds(r.mttd_seconds_avg)})</span>
        </div>
        <div className="reliability-figure">
          <strong data-testid="mttr-last">{formatSeconds(r.mttr_seconds_last)}</strong>
          <span>MTTR, last (avg {formatSeconds(r.mttr_seconds_avg)})</span>
        </div>
        <div className="reliability-figure">
          <strong>{r.alerts}</strong>
          <span>alerts in {r.days} days</span>
        </div>
        <div className="reliability-figure">
          <strong>{r.open.length}</strong>
          <span>not resolved</span>
        </div>
      </div>
      {r.open.length > 0 && (
        <ul>
          {r.open.map((a) => (
            <li key={a.id}>
              <Link to={`/alerts/${a.id}`}>Alert #{a.id}</Link> — {kindLabel(a.kind)} ({a.state})
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
