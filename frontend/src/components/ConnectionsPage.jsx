import { useState } from 'react';
import { connections } from '../api.js';
import { formatTime } from '../format.js';
import { useApi } from '../useApi.js';
import PageHeading from './PageHeading.jsx';
import { ErrorNotice, Loading } from './Notice.jsx';

const dash = <span className="muted">—</span>;

/** The `has_<field>` flags of a connection, e.g. [["password", true], ["token", false]]. */
function secretFlags(connection) {
  return Object.keys(connection)
    .filter((key) => key.startsWith('has_') && typeof connection[key] === 'boolean')
    .sort()
    .map((key) => [key.slice(4).replace(/_/g, ' '), connection[key]]);
}

function Secrets({ connection }) {
  const flags = secretFlags(connection);
  if (!flags.length) return <span className="muted small">none needed</span>;
  return (
    <ul className="secret-list">
      {flags.map(([name, stored]) => (
        <li key={name} className={stored ? 'secret-stored' : 'secret-missing'}>
          {stored ? (
            <>
              {name} <span aria-hidden="true">✓</span> stored
            </>
          ) : (
            <>
              {name} <span aria-hidden="true">✗</span> not stored
            </>
          )}
        </li>
      ))}
    </ul>
  );
}

function Limits({ connection }) {
  const rate = connection.rate_limit_per_second;
  const inFlight = connection.max_in_flight;
  if (rate == null && inFlight == null) return <span className="muted small">no limits</span>;
  return (
    <span className="limits">
      <span>{rate != null ? `${rate} /s` : <span className="muted">any rate</span>}</span>
      <span className="muted"> · </span>
      <span>{inFlight != null ? `${inFlight} in flight` : <span className="muted">any in flight</span>}</span>
    </span>
  );
}

const BREAKER_LABEL = { closed: 'closed', half_open: 'half open', open: 'open' };

function BreakerBadge({ breaker }) {
  if (!breaker?.state) return dash;
  const { state, consecutive_failures: failures, open_for_seconds: openFor } = breaker;
  let label = BREAKER_LABEL[state] ?? state;
  if (state === 'open' && openFor != null) label = `open for ${Math.max(1, Math.ceil(openFor))} s`;
  return (
    <span className="breaker">
      <span className={`badge breaker-${state.replace(/[^a-z_]/g, '')}`} title="Circuit breaker">
        {label}
      </span>
      {failures > 0 && (
        <span className="muted small"> {failures} failure{failures === 1 ? '' : 's'} in a row</span>
      )}
    </span>
  );
}

function TestButton({ connection }) {
  const [state, setState] = useState({ busy: false, result: null, error: null });
  async function run() {
    setState({ busy: true, result: null, error: null });
    try {
      const result = await connections.test(connection.id);
      setState({ busy: false, result, error: null });
    } catch (error) {
      setState({ busy: false, result: null, error });
    }
  }
  const { busy, result, error } = state;
  return (
    <div className="test-cell">
      <button type="button" className="button button-small" onClick={run} disabled={busy}
        aria-label={`Test connection ${connection.name}`}>
        {busy ? 'Testing…' : 'Test connection'}
      </button>
      <div className="test-result small" role="status" aria-live="polite">
        {result && (
          <span className={result.ok ? 'test-ok' : 'text-error'}>
            <span aria-hidden="true">{result.ok ? '✓ ' : '✗ '}</span>
            <span className="visually-hidden">{result.ok ? 'OK: ' : 'Failed: '}</span>
            {result.message || (result.ok ? 'OK' : 'Failed')}
          </span>
        )}
        {error && <span className="text-error">{error.message}</span>}
      </div>
    </div>
  );
}

export default function ConnectionsPage() {
  const { data, error, loading, reload } = useApi((signal) => connections.list({ signal }), []);
  const items = data?.items ?? [];

  return (
    <>
      <PageHeading title="Connections">
        <button type="button" className="button" onClick={reload} disabled={loading}>
          Refresh
        </button>
      </PageHeading>
      <p className="muted page-intro">
        Where flows deliver. Secrets are write-only: this page only shows whether each one is stored.
      </p>
      <ErrorNotice error={error} onRetry={reload} />
      {loading && !data && <Loading>Loading connections…</Loading>}
      {data && (
        <div className={`card table-card${loading ? ' is-loading' : ''}`} aria-busy={loading}>
          {items.length === 0 ? (
            <p className="empty">No connections yet.</p>
          ) : (
            <table className="table">
              <caption className="visually-hidden">Connections</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Connector</th>
                  <th scope="col">Target</th>
                  <th scope="col">Secrets</th>
                  <th scope="col">Limits</th>
                  <th scope="col">Breaker</th>
                  <th scope="col">Check</th>
                </tr>
              </thead>
              <tbody>
                {items.map((c) => {
                  const target = c.config?.base_url;
                  return (
                    <tr key={c.id}>
                      <td>
                        <div className="strong">{c.name}</div>
                        {c.updated_at && (
                          <div className="muted small" title={c.updated_at}>updated {formatTime(c.updated_at)}</div>
                        )}
                      </td>
                      <td><code>{c.connector}</code></td>
                      <td>{target ? <code className="break">{target}</code> : dash}</td>
                      <td><Secrets connection={c} /></td>
                      <td><Limits connection={c} /></td>
                      <td><BreakerBadge breaker={c.breaker} /></td>
                      <td><TestButton connection={c} /></td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </div>
      )}
    </>
  );
}
