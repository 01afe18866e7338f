import { useEffect } from 'react';
import { useApi } from '../useApi.js';
import { formatTime } from '../format.js';
import PageHeading from '../components/PageHeading.jsx';
import Link from '../components/Link.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { dashboard } from '../landscape/api.js';
import Sparkline from './Sparkline.jsx';
import './dashboard.css';

const BREAKER = { closed: 'closed', half_open: 'half open', open: 'open' };

function seconds(value) {
  if (value === null || value === undefined) return '—';
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
  return `${(value / 60).toFixed(1)} min`;
}

function percent(value) {
  return value === null || value === undefined ? '—' : `${(value * 100).toFixed(value === 1 ? 0 : 1)} %`;
}

function tone(h) {
  if (h.breaker === 'open' || (h.success_rate !== null && h.success_rate < 0.75)) return 'bad';
  if (h.failed_last_hour > 0 || h.dead_letters > 0 || h.breaker === 'half_open') return 'warn';
  return h.runs_last_hour > 0 ? 'good' : 'idle';
}

function Figures({ h }) {
  const rows = [
    ['Messages / min', h.messages_per_minute.toFixed(2)],
    ['Success rate', percent(h.success_rate)],
    ['Dead letters', h.dead_letters],
    ['Latency p50', seconds(h.latency_p50_seconds)],
    ['Latency p95', seconds(h.latency_p95_seconds)],
    ['Backlog', h.backlog],
    ['Breaker', BREAKER[h.breaker] ?? h.breaker],
    ['Last success', h.last_success_at ? formatTime(h.last_success_at) : 'never'],
  ];
  return (
    <dl className="health-figures">
      {rows.map(([label, value]) => (
        <div key={label} className={label === 'Breaker' && h.breaker === 'open' ? 'figure-bad' : undefined}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function Sparks({ h, name }) {
  return (
    <div className="health-sparks">
      <div>
        <span className="muted small">24 h (hourly)</span>
        <Sparkline label={`${name}, last 24 hours`} {...h.sparklines['24h']} />
      </div>
      <div>
        <span className="muted small">7 days (6-hourly)</span>
        <Sparkline label={`${name}, last 7 days`} {...h.sparklines['7d']} />
      </div>
    </div>
  );
}

function FlowCard({ card }) {
  const t = tone(card);
  return (
    <article className={`card health-card tone-${t}`} aria-labelledby={`flow-health-${card.flow_id}`}>
      <h3 id={`flow-health-${card.flow_id}`}>
        <Link to={`/runs?flow=${card.flow_id}`}>{card.flow_name}</Link>
      </h3>
      <Figures h={card} />
      <Sparks h={card} name={card.flow_name} />
    </article>
  );
}

export default function DashboardPage() {
  const { data, error, loading, reload } = useApi((signal) => dashboard.get({ signal }), []);
  useEffect(() => {
    const timer = setInterval(reload, 30000);
    return () => clearInterval(timer);
  }, [reload]);

  return (
    <>
      <PageHeading title="Dashboard">
        <button type="button" className="button" onClick={reload} disabled={loading}>Refresh</button>
      </PageHeading>
      <p className="muted page-intro">
        Rates, success and latency cover the last hour; dead letters and backlog are counts now. Bars: runs per
        bucket, failed runs in red.
      </p>
      <ErrorNotice error={error} onRetry={reload} />
      {loading && !data && <Loading>Loading the dashboard…</Loading>}
      {data && (
        <>
          <section className={`card health-card health-overall tone-${tone(data.overall)}`} aria-labelledby="overall-title">
            <h2 id="overall-title">All flows</h2>
            <Figures h={data.overall} />
            <Sparks h={data.overall} name="All flows" />
          </section>
          <h2 className="section-title">Per flow</h2>
          {data.flows.length === 0 && <p className="muted">No flows yet.</p>}
          <div className="health-grid">
            {data.flows.map((card) => <FlowCard key={card.flow_id} card={card} />)}
          </div>
        </>
      )}
    </>
  );
}
