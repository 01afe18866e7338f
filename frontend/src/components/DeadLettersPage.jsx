import { useEffect, useMemo, useRef, useState } from 'react';
import { deadLetters, flows, withQuery } from '../api.js';
import { formatTime, prettyJson } from '../format.js';
import { navigate } from '../router.js';
import { useApi } from '../useApi.js';
import Link from './Link.jsx';
import PageHeading from './PageHeading.jsx';
import StatusBadge from './StatusBadge.jsx';
import { ErrorNotice, Loading } from './Notice.jsx';

const PAGE_SIZE = 50;
const POLL_MS = 2000;
const dash = <span className="muted">—</span>;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "2025-03-01T10:30" (a datetime-local value, local time) → ISO 8601 UTC for the API. */
function toIso(local) {
  if (!local) return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

/** What a failed replay request means for the person who pressed the button. */
function replayLead(error) {
  if (!error) return null;
  if (error.status === 403) return 'Only integration owners can replay dead letters.';
  if (error.status === 409) return 'This replay cannot run as asked.';
  if (error.status === 422) return 'The replay request was refused.';
  return null;
}

function failedSteps(item) {
  return (item.failed_steps ?? []).map((s) => s.step_id);
}

/** The response code of the delivery that failed (or of any delivery not acknowledged). */
function responseCode(item) {
  for (const step of item.failed_steps ?? []) {
    if (step.delivery?.response_code != null) return step.delivery.response_code;
  }
  const failed = (item.deliveries ?? []).find((d) => d.status !== 'acknowledged' && d.response_code != null);
  return failed ? failed.response_code : null;
}

function SelectAllOnPage({ items, selected, onChange, disabled }) {
  const ref = useRef(null);
  const chosen = items.filter((i) => selected.has(i.id)).length;
  const all = items.length > 0 && chosen === items.length;
  useEffect(() => {
    if (ref.current) ref.current.indeterminate = chosen > 0 && !all;
  }, [chosen, all]);
  return (
    <input
      ref={ref}
      type="checkbox"
      aria-label="Select all dead letters on this page"
      checked={all}
      disabled={disabled}
      onChange={(e) => onChange(e.target.checked)}
    />
  );
}

function Destination({ dest }) {
  const skipped = dest.action === 'skipped';
  return (
    <li className={`destination${skipped ? ' is-skipped' : ''}`}>
      <div className="destination-head">
        <code>{dest.step_id}</code>
        {dest.connection_name && <span className="muted small">→ {dest.connection_name}</span>}
        {skipped ? (
          <span className="badge badge-skipped">skipped — already delivered</span>
        ) : (
          <span className="badge badge-will-send">will send</span>
        )}
        <span className="muted small destination-key" title="Idempotency key">
          key <code className="break">{dest.idempotency_key}</code>
        </span>
      </div>
      {!skipped && (
        <details className="message">
          <summary>Message that would be sent</summary>
          {dest.message === null || dest.message === undefined ? (
            <p className="muted json-empty">none</p>
          ) : (
            <pre tabIndex={0}>{prettyJson(dest.message)}</pre>
          )}
        </details>
      )}
    </li>
  );
}

function NotReplayable({ items, title }) {
  if (!items?.length) return null;
  return (
    <div className="not-replayable">
      <h3>{title} <span className="count">{items.length}</span></h3>
      <ul>
        {items.map((n) => (
          <li key={n.id}>
            <Link to={`/runs/${n.id}`}>#{n.id}</Link> — {n.reason}
          </li>
        ))}
      </ul>
    </div>
  );
}

function PreviewPanel({ preview, onReplay, replaying, replayDisabled, onDiscard }) {
  const { result } = preview;
  const runs = result.runs ?? [];
  return (
    <section className="card panel" aria-labelledby="preview-title">
      <div className="panel-head">
        <h2 id="preview-title">
          Replay preview <span className="muted small">({result.version === 'live' ? 'live version' : 'original versions'})</span>
        </h2>
        <button type="button" className="button button-ghost button-small" onClick={onDiscard}>
          Discard preview
        </button>
      </div>
      <p className="muted small">
        Nothing has been sent. {plural(runs.length, 'run')} can be replayed
        {result.matched > runs.length ? ` (${result.matched} match the filter)` : ''}.
        {result.more && ' More dead letters match than one replay takes: preview again after this one.'}
      </p>
      <NotReplayable items={result.not_replayable} title="Not replayable" />
      {runs.length > 0 && (
        <ol className="preview-runs">
          {runs.map((run) => (
            <li key={run.run_id} className="preview-run">
              <div className="preview-run-head">
                <Link to={`/runs/${run.run_id}`} className="strong">#{run.run_id}</Link>
                <span>{run.flow_name}</span>
                {run.business_key && <code>{run.business_key}</code>}
                <span className="muted small">
                  v{run.version}
                  {run.previous_version !== run.version && ` (was v${run.previous_version})`}
                </span>
                {run.outcome && run.outcome !== 'succeeded' && (
                  <span className="small">simulated outcome <StatusBadge status={run.outcome} /></span>
                )}
              </div>
              {run.reason && <p className="small text-error preview-reason">{run.reason}</p>}
              {run.destinations?.length ? (
                <ul className="destinations" aria-label={`Destinations of run #${run.run_id}`}>
                  {run.destinations.map((d) => (
                    <Destination key={d.step_id} dest={d} />
                  ))}
                </ul>
              ) : (
                <p className="muted small">No destination would be called.</p>
              )}
            </li>
          ))}
        </ol>
      )}
      <div className="panel-actions">
        <button
          type="button"
          className="button button-primary"
          onClick={onReplay}
          disabled={replaying || replayDisabled || runs.length === 0}
        >
          {replaying ? 'Replaying…' : `Replay ${plural(runs.length, 'run')}`}
        </button>
        <span className="muted small">Runs are queued again with the same idempotency keys.</span>
      </div>
    </section>
  );
}

function ProgressPanel({ replay, progress, progressError, onDismiss }) {
  const { result } = replay;
  const done = progress?.done || result.replayed === 0;
  const counts = Object.entries(progress?.counts ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const failedAgain = (progress?.runs ?? []).filter((r) => r.status === 'dead_lettered');
  return (
    <section className="card panel" aria-labelledby="progress-title">
      <div className="panel-head">
        <h2 id="progress-title">Replay {done ? 'finished' : 'in progress'}</h2>
        {done && (
          <button type="button" className="button button-ghost button-small" onClick={onDismiss}>
            Dismiss
          </button>
        )}
      </div>
      <p className="small">
        {plural(result.replayed ?? 0, 'run')} queued again
        {result.batch && <span className="muted"> · batch <code>{result.batch}</code></span>}
      </p>
      <NotReplayable items={result.not_replayable} title="Not replayed" />
      {result.replayed > 0 && (
        <div className="progress" role="status" aria-live="polite" aria-label="Replay progress">
          <span className={`progress-state${done ? ' is-done' : ''}`}>
            {done ? 'Done' : 'Working…'}
          </span>
          {counts.length === 0 && !progressError && <span className="muted small">checking…</span>}
          <ul className="progress-counts">
            {counts.map(([status, n]) => (
              <li key={status}>
                <StatusBadge status={status} /> <span className="strong">{n}</span>
              </li>
            ))}
          </ul>
          {!done && <span className="muted small">updates every 2 s</span>}
        </div>
      )}
      {progressError && <ErrorNotice error={progressError} lead="Could not check progress." />}
      {failedAgain.length > 0 && (
        <NotReplayable
          items={failedAgain.map((r) => ({ id: r.id, reason: r.reason || 'dead-lettered again' }))}
          title="Failed again"
        />
      )}
    </section>
  );
}

export default function DeadLettersPage({ query, user }) {
  const canReplay = user?.role === 'owner';
  // Filters live in the URL (/dead-letters?flow=1&reason=400&since=…), like on Runs.
  const flow = query.get('flow') || '';
  const reason = query.get('reason') || '';
  const since = query.get('since') || '';
  const until = query.get('until') || '';
  const offset = Math.max(0, Number.parseInt(query.get('offset') || '0', 10) || 0);
  const filterKey = [flow, reason, since, until].join('|');

  const [draft, setDraft] = useState({ reason, since, until });
  useEffect(() => setDraft({ reason, since, until }), [reason, since, until]);

  const list = useApi(
    (signal) =>
      deadLetters.list(
        { flow, reason, since: toIso(since), until: toIso(until), limit: PAGE_SIZE, offset },
        { signal },
      ),
    [flow, reason, since, until, offset],
  );
  const flowList = useApi((signal) => flows.list({ signal }).catch(() => null), []);
  const flowOptions = flowList.data?.items ?? [];

  const [selected, setSelected] = useState(() => new Set());
  const [allMatching, setAllMatching] = useState(false);
  const [version, setVersion] = useState('original');
  const [preview, setPreview] = useState(null); // { selector, version, result }
  const [previewing, setPreviewing] = useState(false);
  const [actionError, setActionError] = useState(null);
  const [replay, setReplay] = useState(null); // { ids, result }
  const [replaying, setReplaying] = useState(false);
  const [progress, setProgress] = useState(null);
  const [progressError, setProgressError] = useState(null);

  // A new filter is a new selection.
  useEffect(() => {
    setSelected(new Set());
    setAllMatching(false);
  }, [filterKey]);

  // Anything that changes what would be replayed makes the preview stale.
  const selectionKey = allMatching ? `filter:${filterKey}` : [...selected].sort((a, b) => a - b).join(',');
  useEffect(() => {
    setPreview(null);
    setActionError(null);
  }, [selectionKey, version]);

  const replayIds = useMemo(() => replay?.result?.runs?.map((r) => r.run_id) ?? [], [replay]);
  const polling = replayIds.length > 0 && !progress?.done;

  // Follow the replayed runs every 2 s until none is queued, running or retrying.
  useEffect(() => {
    if (!polling) return undefined;
    const controller = new AbortController();
    let timer = null;
    const check = () => {
      deadLetters.replayStatus(replayIds, { signal: controller.signal }).then(
        (status) => {
          setProgress(status);
          setProgressError(null);
          if (!status.done) timer = setTimeout(check, POLL_MS);
        },
        (err) => {
          if (err.name === 'AbortError') return;
          setProgressError(err);
          timer = setTimeout(check, POLL_MS);
        },
      );
    };
    check();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [polling, replayIds]);

  // Once the replay is over, the list no longer holds the runs that went through.
  const finished = Boolean(progress?.done);
  const reloadList = list.reload;
  useEffect(() => {
    if (finished) reloadList();
  }, [finished, reloadList]);

  function setFilters(next) {
    navigate(withQuery('/dead-letters', { flow, reason, since, until, ...next, offset: next.offset || undefined }), {
      replace: true,
    });
  }

  const items = list.data?.items ?? [];
  const total = list.data?.total ?? 0;
  const filtered = Boolean(flow || reason || since || until);
  const selectedCount = allMatching ? total : selected.size;

  function selector() {
    if (allMatching) {
      const filter = {};
      if (flow) filter.flow = Number(flow);
      if (reason.trim()) filter.reason = reason.trim();
      if (toIso(since)) filter.since = toIso(since);
      if (toIso(until)) filter.until = toIso(until);
      return { filter };
    }
    return { ids: [...selected].sort((a, b) => a - b) };
  }

  async function runPreview() {
    setPreviewing(true);
    setActionError(null);
    setPreview(null);
    try {
      const sel = selector();
      const result = await deadLetters.replay({ ...sel, version, dry_run: true });
      setPreview({ selector: sel, version, result });
    } catch (err) {
      setActionError(err);
    } finally {
      setPreviewing(false);
    }
  }

  async function runReplay() {
    if (!preview) return;
    // Replay exactly what was previewed: the chosen ids, or the runs the filter matched then.
    const ids = preview.selector.ids ?? preview.result.runs.map((r) => r.run_id);
    setReplaying(true);
    setActionError(null);
    try {
      const result = await deadLetters.replay({ ids, version: preview.version, dry_run: false });
      setProgress(null);
      setProgressError(null);
      setReplay({ ids, result });
      setPreview(null);
      setSelected(new Set());
      setAllMatching(false);
    } catch (err) {
      setActionError(err);
    } finally {
      setReplaying(false);
    }
  }

  function toggle(id, on) {
    setSelected((prev) => {
      const next = new Set(prev);
      if (on) next.add(id);
      else next.delete(id);
      return next;
    });
  }

  function togglePage(on) {
    setSelected((prev) => {
      const next = new Set(prev);
      for (const item of items) {
        if (on) next.add(item.id);
        else next.delete(item.id);
      }
      return next;
    });
  }

  return (
    <>
      <PageHeading title="Dead letters">
        <button type="button" className="button" onClick={list.reload} disabled={list.loading}>
          Refresh
        </button>
      </PageHeading>
      <p className="muted page-intro">
        Runs that failed for good. Fix the cause (the destination, or the mapping in a new live version),
        then replay them: deliveries already acknowledged are skipped, the others reuse their idempotency keys.
      </p>

      <form
        className="filters card"
        role="search"
        aria-label="Filter dead letters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters({ reason: draft.reason.trim(), since: draft.since, until: draft.until });
        }}
      >
        <label className="field">
          <span>Flow</span>
          <select value={flow} onChange={(e) => setFilters({ flow: e.target.value })}>
            <option value="">All flows</option>
            {flow && !flowOptions.some((f) => String(f.id) === flow) && <option value={flow}>Flow #{flow}</option>}
            {flowOptions.map((f) => (
              <option key={f.id} value={String(f.id)}>
                {f.name}
              </option>
            ))}
          </select>
        </label>
        <label className="field field-grow">
          <span>Reason contains</span>
          <input
            type="search"
            placeholder="e.g. HTTP 400"
            value={draft.reason}
            onChange={(e) => setDraft((d) => ({ ...d, reason: e.target.value }))}
          />
        </label>
        <label className="field">
          <span>Failed since</span>
          <input
            type="datetime-local"
            value={draft.since}
            onChange={(e) => setDraft((d) => ({ ...d, since: e.target.value }))}
          />
        </label>
        <label className="field">
          <span>Failed before</span>
          <input
            type="datetime-local"
            value={draft.until}
            onChange={(e) => setDraft((d) => ({ ...d, until: e.target.value }))}
          />
        </label>
        <div className="filter-buttons">
          <button type="submit" className="button button-primary">
            Apply
          </button>
          {filtered && (
            <button type="button" className="button button-ghost" onClick={() => navigate('/dead-letters', { replace: true })}>
              Clear
            </button>
          )}
        </div>
      </form>

      {canReplay ? (
        <section className="card replay-bar" aria-label="Replay">
          <label className="check">
            <input
              type="checkbox"
              checked={allMatching}
              disabled={total === 0}
              onChange={(e) => setAllMatching(e.target.checked)}
            />
            Select all {plural(total, 'dead letter')} matching the filter
          </label>
          <span className="muted small" aria-live="polite">{plural(selectedCount, 'run')} selected</span>
          <fieldset className="segmented">
            <legend className="visually-hidden">Version to replay with</legend>
            <label className={version === 'original' ? 'is-checked' : undefined}>
              <input type="radio" name="replay-version" value="original" checked={version === 'original'}
                onChange={() => setVersion('original')} />
              Original
            </label>
            <label className={version === 'live' ? 'is-checked' : undefined}>
              <input type="radio" name="replay-version" value="live" checked={version === 'live'}
                onChange={() => setVersion('live')} />
              Live
            </label>
          </fieldset>
          <button
            type="button"
            className="button button-primary"
            onClick={runPreview}
            disabled={previewing || selectedCount === 0}
          >
            {previewing ? 'Previewing…' : 'Preview replay'}
          </button>
        </section>
      ) : (
        <p className="notice" role="note">
          Only integration owners can replay dead letters. You can look at them and their failed steps here.
        </p>
      )}

      <ErrorNotice error={actionError} lead={replayLead(actionError)} />
      {canReplay && preview && (
        <PreviewPanel
          preview={preview}
          onReplay={runReplay}
          replaying={replaying}
          onDiscard={() => setPreview(null)}
        />
      )}
      {replay && (
        <ProgressPanel
          replay={replay}
          progress={progress}
          progressError={progressError}
          onDismiss={() => {
            setReplay(null);
            setProgress(null);
          }}
        />
      )}

      <ErrorNotice error={list.error} onRetry={list.reload} />
      {list.loading && !list.data && <Loading>Loading dead letters…</Loading>}
      {list.data && (
        <div className={`card table-card${list.loading ? ' is-loading' : ''}`} aria-busy={list.loading}>
          {items.length === 0 ? (
            <p className="empty">{filtered ? 'No dead letters match these filters.' : 'No dead letters. Everything went through.'}</p>
          ) : (
            <table className="table">
              <caption className="visually-hidden">Dead letters</caption>
              <thead>
                <tr>
                  {canReplay && (
                    <th scope="col" className="select-cell">
                      <SelectAllOnPage items={items} selected={selected} onChange={togglePage} disabled={allMatching} />
                    </th>
                  )}
                  <th scope="col">Run</th>
                  <th scope="col">Flow</th>
                  <th scope="col">Version</th>
                  <th scope="col">Business key</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Failed step</th>
                  <th scope="col" className="align-right">Response code</th>
                  <th scope="col">Finished</th>
                </tr>
              </thead>
              <tbody>
                {items.map((item) => {
                  const code = responseCode(item);
                  const steps = failedSteps(item);
                  return (
                    <tr key={item.id} className={selected.has(item.id) || allMatching ? 'is-selected' : undefined}>
                      {canReplay && (
                        <td className="select-cell">
                          <input
                            type="checkbox"
                            aria-label={`Select run #${item.id}`}
                            checked={allMatching || selected.has(item.id)}
                            disabled={allMatching}
                            onChange={(e) => toggle(item.id, e.target.checked)}
                          />
                        </td>
                      )}
                      <td>
                        <Link to={`/runs/${item.id}`} className="strong">#{item.id}</Link>
                        {item.replays > 0 && (
                          <div className="muted small" title={item.replayed_at || undefined}>
                            replayed {item.replays}×
                          </div>
                        )}
                      </td>
                      <td>{item.flow_name ?? dash}</td>
                      <td>{item.flow_version != null ? `v${item.flow_version}` : dash}</td>
                      <td>{item.business_key ? <code>{item.business_key}</code> : dash}</td>
                      <td className="reason-cell small">{item.reason || dash}</td>
                      <td>{steps.length ? steps.map((s) => <code key={s}>{s}</code>) : dash}</td>
                      <td className="align-right" title={item.failed_steps?.[0]?.delivery?.response_excerpt || undefined}>
                        {code ?? dash}
                      </td>
                      <td title={item.finished_at || undefined}>{formatTime(item.finished_at)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
          {items.length > 0 && (
            <div className="table-footer muted pager">
              <span>
                {total > items.length
                  ? `${offset + 1}–${offset + items.length} of ${total} dead letters`
                  : plural(total, 'dead letter')}
              </span>
              {total > PAGE_SIZE && (
                <span className="pager-buttons">
                  <button type="button" className="button button-small" disabled={offset === 0}
                    onClick={() => setFilters({ offset: Math.max(0, offset - PAGE_SIZE) })}>
                    Previous
                  </button>
                  <button type="button" className="button button-small" disabled={offset + items.length >= total}
                    onClick={() => setFilters({ offset: offset + PAGE_SIZE })}>
                    Next
                  </button>
                </span>
              )}
            </div>
          )}
        </div>
      )}
    </>
  );
}
