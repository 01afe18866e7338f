import { useEffect, useMemo } from 'react';
import { Background, Controls, MarkerType, Position, ReactFlow } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { useApi } from '../useApi.js';
import PageHeading from '../components/PageHeading.jsx';
import Link from '../components/Link.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { kindLabel, landscape } from './api.js';
import './landscape.css';

// Row order within a column.
const KIND_ORDER = ['commerce', 'marketing', 'crm', 'loyalty', 'pim', 'service', 'oms', 'erp', 'wms', 'other'];
export const HEALTH = {
  green: { color: '#12805c', label: 'healthy', text: 'Healthy: runs succeeded in the last hour' },
  amber: { color: '#c27a00', label: 'degraded', text: 'Degraded: some failures or retries' },
  red: { color: '#c4291c', label: 'failing', text: 'Failing: many failures, or the breaker is open' },
  grey: { color: '#8a93a6', label: 'idle', text: 'Idle: no runs in the last hour' },
};
const COLUMN_WIDTH = 250;
const ROW_HEIGHT = 100;

/**
 * Columns by flow direction: a system sits one column right of the furthest system that
 * feeds it (sources left, systems of record right); unconnected systems get the last column.
 * Rows by kind, then name: the same landscape always gives the same picture.
 */
export function layout(nodes, edges) {
  const rank = Object.fromEntries(nodes.map((n) => [n.id, 0]));
  const linked = new Set(edges.flatMap((e) => [e.source, e.target]));
  // Longest path, bounded by the node count so a two-way flow (a cycle) cannot loop forever.
  for (let i = 0; i < nodes.length; i += 1) {
    let changed = false;
    for (const e of edges) {
      if (e.source !== e.target && rank[e.target] < rank[e.source] + 1 && rank[e.source] + 1 < nodes.length) {
        rank[e.target] = rank[e.source] + 1;
        changed = true;
      }
    }
    if (!changed) break;
  }
  const lastColumn = Math.max(0, ...Object.values(rank)) + 1;
  const column = (n) => (linked.has(n.id) ? rank[n.id] : lastColumn);
  const kindIndex = (n) => (KIND_ORDER.indexOf(n.kind) === -1 ? KIND_ORDER.length : KIND_ORDER.indexOf(n.kind));
  const columns = [...new Set(nodes.map(column))].sort((a, b) => a - b);
  const rows = {};
  return [...nodes]
    .sort((a, b) => column(a) - column(b) || kindIndex(a) - kindIndex(b) || a.name.localeCompare(b.name))
    .map((n) => {
      const col = columns.indexOf(column(n));
      const row = rows[col] ?? 0;
      rows[col] = row + 1;
      return {
        id: n.id,
        position: { x: col * COLUMN_WIDTH, y: row * ROW_HEIGHT },
        ariaLabel: `System ${n.name} (${kindLabel(n.kind)}${n.criticality ? `, ${n.criticality}` : ''})`,
        className: `landscape-node${n.id === 'unknown' ? ' landscape-node-unknown' : ''}`,
        data: {
          label: (
            <div>
              <strong>{n.name}</strong>
              <div className="landscape-node-meta">
                {kindLabel(n.kind)}
                {n.criticality && <> · {n.criticality}</>}
              </div>
            </div>
          ),
        },
        sourcePosition: Position.Right,
        targetPosition: Position.Left,
        draggable: false,
        connectable: false,
      };
    });
}

function toEdges(edges) {
  return edges.map((e) => {
    const { color } = HEALTH[e.health] ?? HEALTH.grey;
    return {
      id: e.id,
      source: e.source,
      target: e.target,
      ariaLabel: e.label,
      className: `landscape-edge edge-${e.health}`,
      style: { stroke: color, strokeWidth: 2.5 },
      markerEnd: { type: MarkerType.ArrowClosed, color },
      data: { health: e.health },
    };
  });
}

function Legend() {
  return (
    <ul className="landscape-legend" aria-label="Legend">
      {Object.entries(HEALTH).map(([key, h]) => (
        <li key={key}>
          <span className="legend-swatch" style={{ background: h.color }} aria-hidden="true" />
          {h.text}
        </li>
      ))}
    </ul>
  );
}

function HealthBadge({ health }) {
  const h = HEALTH[health] ?? HEALTH.grey;
  return <span className={`badge health-${health}`}>{h.label}</span>;
}

function EdgeTable({ edges, nodes }) {
  const names = Object.fromEntries(nodes.map((n) => [n.id, n.name]));
  return (
    <div className="card table-card">
      <table className="table" aria-label="Integrations on the map">
        <thead>
          <tr>
            <th scope="col">Integration</th>
            <th scope="col">From → to</th>
            <th scope="col">Last hour</th>
            <th scope="col">Why</th>
          </tr>
        </thead>
        <tbody>
          {edges.length === 0 && <tr><td colSpan={4} className="muted">No live flow connects two systems yet.</td></tr>}
          {edges.map((e) => (
            <tr key={e.id}>
              <td><Link to={`/runs?flow=${e.flow_id}`}>{e.flow_name}</Link></td>
              <td>{names[e.source]} → {names[e.target]}</td>
              <td><HealthBadge health={e.health} /></td>
              <td className="small">{e.reason}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RiskTable({ risks }) {
  return (
    <div className="card table-card">
      <table className="table risk-table" aria-label="Integrations by risk">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Integration</th>
            <th scope="col" className="align-right">Risk</th>
            <th scope="col">Factors (× weight; 1 = no added risk)</th>
          </tr>
        </thead>
        <tbody>
          {risks.length === 0 && <tr><td colSpan={4} className="muted">No live integrations.</td></tr>}
          {risks.map((r, i) => (
            <tr key={r.flow_id}>
              <td>{i + 1}</td>
              <td>
                <strong>{r.flow_name}</strong>
                <div className="muted small">
                  {r.source ?? 'unknown source'} → {r.destinations.length ? r.destinations.join(', ') : 'no known destination'}
                </div>
              </td>
              <td className="align-right"><strong>{r.score.toFixed(2)}</strong></td>
              <td>
                <ul className="risk-factors">
                  {r.factors.map((f) => (
                    <li key={f.key} className={f.weight > 1 ? 'risk-factor-raised' : 'risk-factor-neutral'}>
                      <span className="risk-factor-label">{f.label}</span>{' '}
                      <span className="risk-factor-weight">×{Number(f.weight.toFixed(2))}</span>
                      <span className="muted"> — {f.explanation}</span>
                    </li>
                  ))}
                </ul>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export default function MapPage() {
  const { data, error, loading, reload } = useApi((signal) => landscape.get({ signal }), []);
  useEffect(() => {
    const timer = setInterval(reload, 30000);
    return () => clearInterval(timer);
  }, [reload]);
  const nodes = useMemo(() => (data ? layout(data.nodes, data.edges) : []), [data]);
  const edges = useMemo(() => (data ? toEdges(data.edges) : []), [data]);

  return (
    <>
      <PageHeading title="Map">
        <a className="button" href={landscape.exportUrl('json')} download="flowgate-inventory.json">
          Export JSON
        </a>
        <a className="button" href={landscape.exportUrl('csv', 'integrations')} download>
          Export integrations CSV
        </a>
        <a className="button" href={landscape.exportUrl('csv', 'systems')} download>
          Export systems CSV
        </a>
        <button type="button" className="button" onClick={reload} disabled={loading}>Refresh</button>
      </PageHeading>
      <p className="muted page-intro">
        Systems and the live flows between them, coloured by their health over the last hour.
        Manage the systems on the <Link to="/systems">Systems</Link> page.
      </p>
      <ErrorNotice error={error} onRetry={reload} />
      {loading && !data && <Loading>Loading the landscape…</Loading>}
      {data && (
        <>
          <section aria-labelledby="map-title" className="card landscape-map-card">
            <h2 id="map-title" className="visually-hidden">Landscape map</h2>
            <p className="visually-hidden">{`${data.nodes.length} systems, ${data.edges.length} integrations; the table below lists each one with its health.`}</p>
            <div className="landscape-map">
              <ReactFlow
                nodes={nodes}
                edges={edges}
                fitView
                fitViewOptions={{ padding: 0.2 }}
                nodesDraggable={false}
                nodesConnectable={false}
                elementsSelectable={false}
                proOptions={{ hideAttribution: true }}
                minZoom={0.3}
              >
                <Background gap={20} />
                <Controls showInteractive={false} />
              </ReactFlow>
            </div>
            <Legend />
          </section>
          <h2 className="section-title">Integrations</h2>
          <EdgeTable edges={data.edges} nodes={data.nodes} />
          <h2 className="section-title">Risk ranking</h2>
          <p className="muted small">
            Risk = criticality × recent failure rate × missing owner × no retry/dead-letter policy × personal data ×
            unreviewed changes × last touched. Highest first.
          </p>
          <RiskTable risks={data.risks} />
        </>
      )}
    </>
  );
}
