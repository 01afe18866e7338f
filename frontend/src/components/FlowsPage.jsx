import { useEffect, useId, useState } from 'react';
import { flows } from '../api.js';
import { formatTime } from '../format.js';
import { navigate } from '../router.js';
import { useApi } from '../useApi.js';
import Link from './Link.jsx';
import PageHeading from './PageHeading.jsx';
import { ErrorNotice, Loading } from './Notice.jsx';
import StatusBadge from './StatusBadge.jsx';
import './flows.css';

function DraftState({ flow }) {
  const inReview = (flow.versions ?? []).filter((v) => v.status === 'in_review').map((v) => v.number);
  const parts = [];
  if (flow.draft_version !== null && flow.draft_version !== undefined) {
    parts.push(
      <span className="draft" key="draft">
        Draft v{flow.draft_version}
        {flow.draft_revision !== null && flow.draft_revision !== undefined && (
          <span className="muted"> · rev {flow.draft_revision}</span>
        )}
      </span>,
    );
  }
  for (const n of inReview) {
    parts.push(<span className="in-review" key={`r${n}`}>{parts.length ? ' · ' : ''}v{n} in review</span>);
  }
  return parts.length ? <>{parts}</> : <span className="muted">No draft</span>;
}

function WebhookUrl({ slug }) {
  const [copied, setCopied] = useState(false);
  const path = `/hooks/${slug}`;
  const canCopy = typeof navigator !== 'undefined' && navigator.clipboard;
  async function copy() {
    try {
      await navigator.clipboard.writeText(window.location.origin + path);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      /* clipboard refused: the URL is still visible to select */
    }
  }
  return (
    <span className="webhook">
      <code>{path}</code>
      {canCopy && (
        <button type="button" className="button button-small button-ghost" onClick={copy}
          aria-label={`Copy webhook URL for ${slug}`}>
          {copied ? 'Copied' : 'Copy'}
        </button>
      )}
    </span>
  );
}

/** After "Submit for review" in the editor: which version went where, and what happens next. */
function SubmittedNotice({ flowId, items }) {
  const flow = items.find((f) => String(f.id) === String(flowId));
  if (!flow) return null;
  const inReview = (flow.versions ?? []).filter((v) => v.status === 'in_review').map((v) => v.number);
  const number = inReview.length ? Math.max(...inReview) : null;
  return (
    <div className="notice flows-submitted" role="status">
      <span>
        <strong>{flow.name}</strong>
        {number !== null ? ` v${number} was submitted for review.` : ' was submitted for review.'} An owner
        decides; the live version keeps running until then.
      </span>
      {number !== null && <Link to={`/reviews/${flow.id}/${number}`}>Open the review</Link>}
    </div>
  );
}

export default function FlowsPage({ query }) {
  const q = query?.get('q') ?? '';
  const submitted = query?.get('submitted') ?? null;
  const [text, setText] = useState(q);
  const searchId = useId();
  useEffect(() => setText(q), [q]);
  const { data, error, loading, reload } = useApi((signal) => flows.search(q, { signal }), [q]);
  const items = data?.items ?? [];

  // Search as you type (debounced), kept in the URL so it survives reloads and links.
  useEffect(() => {
    if (text === q) return undefined;
    const timer = setTimeout(() => {
      navigate(text.trim() ? `/flows?q=${encodeURIComponent(text.trim())}` : '/flows', { replace: true });
    }, 250);
    return () => clearTimeout(timer);
  }, [text, q]);

  return (
    <>
      <PageHeading title="Flows">
        <button type="button" className="button" onClick={reload} disabled={loading}>
          Refresh
        </button>
        <Link to="/flows/new" className="button button-primary">New flow</Link>
      </PageHeading>
      <form className="card flows-toolbar" role="search" onSubmit={(e) => e.preventDefault()}>
        <label className="field" htmlFor={searchId}>
          <span>Search flows</span>
          <input id={searchId} type="search" placeholder="Name contains…" value={text}
            onChange={(e) => setText(e.target.value)} />
        </label>
      </form>
      <ErrorNotice error={error} onRetry={reload} />
      {submitted && data && <SubmittedNotice flowId={submitted} items={items} />}
      {loading && !data && <Loading>Loading flows…</Loading>}
      {data && (
        <div className={`card table-card ${loading ? 'is-loading' : ''}`}>
          {items.length === 0 ? (
            q ? (
              <p className="empty">No flow matches “{q}”.</p>
            ) : (
              <div className="empty-state">
                <h2>No flows yet</h2>
                <p>A flow takes messages from one system, reshapes them and delivers them to another.</p>
                <Link to="/flows/new" className="button button-primary">Create your first flow</Link>
              </div>
            )
          ) : (
            <table className="table">
              <caption className="visually-hidden">Flows</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Slug</th>
                  <th scope="col">Owner</th>
                  <th scope="col">Live version</th>
                  <th scope="col">Draft</th>
                  <th scope="col">Webhook URL</th>
                  <th scope="col">Last run</th>
                  <th scope="col"><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {items.map((flow) => {
                  const live = flow.live_version !== null && flow.live_version !== undefined;
                  return (
                    <tr key={flow.id}>
                      <td>
                        <Link to={`/flows/${flow.id}`} className="strong">{flow.name}</Link>
                        {flow.description && <div className="muted small">{flow.description}</div>}
                      </td>
                      <td><code>{flow.slug}</code></td>
                      <td>{flow.owner?.email ?? <span className="muted">—</span>}</td>
                      <td>{live ? <span className="live">v{flow.live_version}</span> : <span className="muted">—</span>}</td>
                      <td><DraftState flow={flow} /></td>
                      <td>{live && flow.webhook_path ? <WebhookUrl slug={flow.slug} /> : <span className="muted">—</span>}</td>
                      <td>
                        {flow.last_run ? (
                          <Link to={`/runs/${flow.last_run.id}`} title={formatTime(flow.last_run.received_at)}
                            aria-label={`Last run of ${flow.name}: ${flow.last_run.status}`}>
                            <StatusBadge status={flow.last_run.status} />
                          </Link>
                        ) : <span className="muted">Never run</span>}
                      </td>
                      <td className="align-right">
                        <span className="row-actions">
                          <Link to={`/flows/${flow.id}/edit`} aria-label={`Edit ${flow.name}`}>Edit</Link>
                          <Link to={`/runs?flow=${encodeURIComponent(flow.id)}`} aria-label={`Runs of ${flow.name}`}>
                            Runs
                          </Link>
                        </span>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
          {typeof data.total === 'number' && items.length > 0 && (
            <p className="table-footer muted">
              {data.total === items.length ? `${data.total} flow${data.total === 1 ? '' : 's'}` : `Showing ${items.length} of ${data.total} flows`}
            </p>
          )}
        </div>
      )}
    </>
  );
}
