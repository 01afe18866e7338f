import { useEffect, useState } from 'react';
import { flows, runs, withQuery } from '../api.js';
import { formatDuration, formatTime, RUN_STATUSES, statusLabel } from '../format.js';
import { navigate } from '../router.js';
import { useApi } from '../useApi.js';
import Link from './Link.jsx';
import PageHeading from './PageHeading.jsx';
import StatusBadge from './StatusBadge.jsx';
import { ErrorNotice, Loading } from './Notice.jsx';
import './runs.css';

const PAGE = 50;

function duration(run) {
  const a = Date.parse(run.received_at || '');
  const b = Date.parse(run.finished_at || '');
  return Number.isNaN(a) || Number.isNaN(b) ? null : Math.max(0, b - a);
}

export default function RunsPage({ query }) {
  // The filters live in the URL (/runs?flow=1&status=succeeded&q=ORD-1), so reload and links keep them.
  const flow = query.get('flow') || '';
  const status = query.get('status') || '';
  const q = query.get('q') || '';

  const [search, setSearch] = useState(q);
  useEffect(() => setSearch(q), [q]);

  // "Show more" grows the page; new filters start again from the first page.
  const [limit, setLimit] = useState(PAGE);
  useEffect(() => setLimit(PAGE), [flow, status, q]);
  const list = useApi((signal) => runs.list({ flow, status, q, limit }, { signal }), [flow, status, q, limit]);
  const flowList = useApi((signal) => flows.list({ signal }).catch(() => null), []);
  const flowOptions = flowList.data?.items ?? [];

  function setFilters(next) {
    navigate(withQuery('/runs', { flow, status, q, ...next }), { replace: true });
  }

  const items = list.data?.items ?? [];
  const filtered = Boolean(flow || status || q);

  return (
    <>
      <PageHeading title="Runs">
        <button type="button" className="button" onClick={list.reload} disabled={list.loading}>
          Refresh
        </button>
      </PageHeading>

      <form
        className="filters card"
        role="search"
        aria-label="Filter runs"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters({ q: search.trim() });
        }}
      >
        <label className="field field-grow">
          <span>Order number, SKU or e-mail</span>
          <input
            type="search"
            placeholder="e.g. ORD-10042, SKU-4711 or jane@example.com"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
          />
        </label>
        <label className="field">
          <span>Status</span>
          <select value={status} onChange={(e) => setFilters({ status: e.target.value })}>
            <option value="">All statuses</option>
            {RUN_STATUSES.map((s) => (
              <option key={s} value={s}>
                {statusLabel(s)}
              </option>
            ))}
          </select>
        </label>
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
        <div className="filter-buttons">
          <button type="submit" className="button button-primary">
            Search
          </button>
          {filtered && (
            <button type="button" className="button button-ghost" onClick={() => navigate('/runs', { replace: true })}>
              Clear
            </button>
          )}
        </div>
      </form>

      <ErrorNotice error={list.error} onRetry={list.reload} />
      {list.loading && !list.data && <Loading>Loading runs…</Loading>}
      {list.data && (
        <div className={`card table-card${list.loading ? ' is-loading' : ''}`} aria-busy={list.loading}>
          {items.length === 0 ? (
            <p className="empty">{filtered ? 'No runs match these filters.' : 'No runs yet.'}</p>
          ) : (
            <table className="table table-clickable">
              <caption className="visually-hidden">Recent runs</caption>
              <thead>
                <tr>
                  <th scope="col">Run</th>
                  <th scope="col">Flow</th>
                  <th scope="col">Status</th>
                  <th scope="col">Business key</th>
                  <th scope="col">Received</th>
                  <th scope="col" className="align-right">Took</th>
                  <th scope="col" className="align-right">Attempts</th>
                </tr>
              </thead>
              <tbody>
                {items.map((run) => (
                  <tr key={run.id} onClick={(e) => {
                    if (!e.target.closest('a')) navigate(`/runs/${run.id}`);
                  }}>
                    <td>
                      <Link to={`/runs/${run.id}`} className="strong">#{run.id}</Link>
                    </td>
                    <td>
                      {run.flow_name ?? <span className="muted">—</span>}
                      {run.flow_version !== null && run.flow_version !== undefined && (
                        <span className="muted small"> v{run.flow_version}</span>
                      )}
                    </td>
                    <td><StatusBadge status={run.status} /></td>
                    <td>{run.business_key ? <code>{run.business_key}</code> : <span className="muted">—</span>}</td>
                    <td title={run.received_at || undefined}>{formatTime(run.received_at)}</td>
                    <td className="align-right runs-duration" title="From received to finished">
                      {duration(run) === null ? <span className="muted">—</span> : formatDuration(duration(run))}
                    </td>
                    <td className="align-right">{run.attempts ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {typeof list.data.total === 'number' && list.data.total > items.length && limit < 500 && (
            <div className="runs-more">
              <button type="button" className="button button-small" onClick={() => setLimit((n) => Math.min(500, n + PAGE))} disabled={list.loading}>
                Show {Math.min(PAGE, list.data.total - items.length)} more
              </button>
            </div>
          )}
          {typeof list.data.total === 'number' && items.length > 0 && (
            <p className="table-footer muted">
              {list.data.total > items.length
                ? `Showing the latest ${items.length} of ${list.data.total} runs`
                : `${list.data.total} run${list.data.total === 1 ? '' : 's'}`}
            </p>
          )}
        </div>
      )}
    </>
  );
}
