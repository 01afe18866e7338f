import { useState } from 'react';
import { flows } from '../api.js';
import { useApi } from '../useApi.js';
import Link from './Link.jsx';
import PageHeading from './PageHeading.jsx';
import { ErrorNotice, Loading } from './Notice.jsx';

function DraftState({ flow }) {
  if (flow.draft_version === null || flow.draft_version === undefined) {
    return <span className="muted">No draft</span>;
  }
  return (
    <span className="draft">
      Draft v{flow.draft_version}
      {flow.draft_revision !== null && flow.draft_revision !== undefined && (
        <span className="muted"> · rev {flow.draft_revision}</span>
      )}
    </span>
  );
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

export default function FlowsPage() {
  const { data, error, loading, reload } = useApi((signal) => flows.list({ signal }), []);
  const items = data?.items ?? [];

  return (
    <>
      <PageHeading title="Flows">
        <button type="button" className="button" onClick={reload} disabled={loading}>
          Refresh
        </button>
      </PageHeading>
      <ErrorNotice error={error} onRetry={reload} />
      {loading && !data && <Loading>Loading flows…</Loading>}
      {data && (
        <div className="card table-card">
          {items.length === 0 ? (
            <p className="empty">No flows yet.</p>
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
                  <th scope="col"><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {items.map((flow) => {
                  const live = flow.live_version !== null && flow.live_version !== undefined;
                  return (
                    <tr key={flow.id}>
                      <td>
                        <div className="strong">{flow.name}</div>
                        {flow.description && <div className="muted small">{flow.description}</div>}
                      </td>
                      <td><code>{flow.slug}</code></td>
                      <td>{flow.owner?.email ?? <span className="muted">—</span>}</td>
                      <td>{live ? <span className="live">v{flow.live_version}</span> : <span className="muted">—</span>}</td>
                      <td><DraftState flow={flow} /></td>
                      <td>{live ? <WebhookUrl slug={flow.slug} /> : <span className="muted">—</span>}</td>
                      <td className="align-right">
                        <Link to={`/runs?flow=${encodeURIComponent(flow.id)}`} aria-label={`Runs of ${flow.name}`}>
                          Runs
                        </Link>
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
