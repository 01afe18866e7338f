import { api } from '../api.js';
import { formatTime, statusLabel } from '../format.js';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { useApi } from '../useApi.js';

const dash = <span className="muted">—</span>;
const when = (v) => (v ? formatTime(v) : dash);

/** What the flow's trigger is doing: next schedule tick / poll state / webhook URL
 * (GET /api/v1/flows/<id>/trigger). The poll cursor is only ever a summary. */
export default function TriggerState({ flowId }) {
  const { data, error, reload } = useApi(
    (signal) => api(`/api/v1/flows/${encodeURIComponent(flowId)}/trigger`, { signal }),
    [flowId],
  );
  if (error) return <ErrorNotice error={error} onRetry={reload} lead="The trigger state could not be loaded." />;
  if (data === null) return <Loading>Loading the trigger…</Loading>;
  const facts = [['Type', data.type ? statusLabel(data.type) : dash]];
  if (!data.live) facts.push(['Version', data.version ? `v${data.version} (not live)` : 'none']);
  if (data.schedule) {
    const s = data.schedule;
    facts.push(['Schedule', <code key="c">{s.cron}</code>], ['Time zone', s.timezone]);
    facts.push(['Next tick', when(s.next_tick)], ['Last fired', when(s.last_fired)]);
    facts.push(['Paused', s.paused_reason ? `${s.paused_reason} (since ${formatTime(s.paused_at)})` : 'no']);
  }
  if (data.poll) {
    const p = data.poll;
    facts.push(['Interval', p.interval_seconds ? `${p.interval_seconds} s` : dash]);
    facts.push(['Last poll', when(p.last_polled_at)], ['Next poll', when(p.next_poll_at)]);
    facts.push(['Polls / runs', `${p.polls} / ${p.fired}`], ['Cursor', p.cursor ? <code key="k">{p.cursor}</code> : 'start']);
    facts.push(['Last error', p.last_error ? <span key="e">{p.last_error}</span> : 'none']);
    facts.push(['Paused', p.paused_reason ? `${p.paused_reason} (since ${formatTime(p.paused_at)})` : 'no']);
  }
  if (data.webhook) {
    facts.push(['Webhook URL', <code key="u">{data.webhook.url}</code>]);
    facts.push(['Accepting', data.webhook.accepting ? 'yes' : 'no: no live version']);
  }
  return (
    <section className="card" aria-label="Trigger">
      <dl className="flow-facts">
        {facts.map(([label, value]) => (
          <div key={label}><dt>{label}</dt><dd>{value}</dd></div>
        ))}
      </dl>
    </section>
  );
}
