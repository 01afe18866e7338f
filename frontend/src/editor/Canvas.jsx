import {
  Background,
  Controls,
  MarkerType,
  MiniMap,
  ReactFlow,
  applyEdgeChanges,
  applyNodeChanges,
  useReactFlow,
  useStore,
  useUpdateNodeInternals,
} from '@xyflow/react';
import { useCallback, useEffect, useState } from 'react';
import { DND_TYPE } from './Palette.jsx';
import { STEP_LABEL, TRIGGER_ID, fallbackPosition, routeBranches } from './model.js';
import FlowNode from './nodes/FlowNode.jsx';

const NODE_TYPES = { flow: FlowNode };
const MINIMAP_COLOURS = { trigger: '#7a5af8', map: '#2f5bd3', filter: '#dc6803', route: '#0e9384', split: '#c11574', deliver: '#067647' };
const minimapColour = (node) => MINIMAP_COLOURS[node.data?.kind] ?? '#c5cbd6';
const edgeId = (e) => (e.case ? `${e.from}:${e.case}->${e.to}` : `${e.from}->${e.to}`);

function summary(node, connectors, connections) {
  if (node.type === 'trigger') return null;
  const oneLine = (s) => (s ?? '').replace(/\s+/g, ' ').trim().slice(0, 48);
  if (node.type === 'map') return oneLine(node.expression);
  if (node.type === 'filter') return oneLine(node.condition);
  if (node.type === 'route') {
    const n = (node.cases ?? []).length;
    return `${n} case${n === 1 ? '' : 's'} · ${node.mode === 'all' ? 'every match' : 'first match'}`;
  }
  if (node.type === 'split') return `each of ${oneLine(node.expression)}`;
  if (node.type === 'deliver') {
    const conn = connections.find((c) => c.id === node.connection_id);
    return conn ? `via ${conn.name}` : 'no connection yet';
  }
  return null;
}

function buildNodes(doc, prev, { connectors, connections, byNode, runStatus, selection, titleOf }) {
  const before = new Map(prev.map((n) => [n.id, n]));
  const all = [
    ...(doc.trigger ? [{ id: TRIGGER_ID, type: 'trigger', triggerType: doc.trigger.type }] : []),
    ...doc.steps,
  ];
  return all.map((step, index) => {
    const old = before.get(step.id);
    const kind = step.type;
    const spec = connectors.find((c) => c.key === (kind === 'trigger' ? step.triggerType : step.connector));
    const kindLabel = kind === 'trigger' ? `Trigger · ${spec?.name ?? step.triggerType}`
      : kind === 'deliver' ? `Destination · ${spec?.name ?? step.connector}` : STEP_LABEL[kind] ?? kind;
    return {
      ...old,
      id: step.id,
      type: 'flow',
      position: doc.layout?.[step.id] ?? old?.position ?? fallbackPosition(doc, step.id, index),
      selected: selection.nodes.includes(step.id),
      deletable: true,
      ariaLabel: `${kindLabel}: ${titleOf(step.id)}`,
      data: {
        id: step.id,
        kind,
        kindLabel,
        title: titleOf(step.id),
        subtitle: summary(step, connectors, connections),
        problems: byNode[step.id] ?? [],
        runStatus: runStatus?.[step.id],
        hasInput: kind !== 'trigger',
        hasOutput: kind !== 'deliver',
        branches: kind === 'route' ? routeBranches(step) : undefined,
      },
    };
  });
}

function buildEdges(doc, prev, { byEdge, selection }) {
  const before = new Map(prev.map((e) => [e.id, e]));
  return doc.edges.map((e, i) => {
    const id = edgeId(e);
    const bad = (byEdge[i] ?? []).length > 0;
    return {
      ...before.get(id),
      id,
      source: e.from,
      target: e.to,
      sourceHandle: e.case ?? null,
      label: e.case,
      selected: selection.edges.includes(id),
      className: bad ? 'edge-problem' : undefined,
      markerEnd: { type: MarkerType.ArrowClosed },
      ariaLabel: e.case ? `Connection from ${e.from} (${e.case}) to ${e.to}` : `Connection from ${e.from} to ${e.to}`,
    };
  });
}

// Nodes an edge cannot be drawn from: in the DOM, but React Flow holds no handle bounds for
// them, or none with the id the edge names. React Flow measures handles only when a node's
// size changes, so a measurement that was dropped or taken before the handles were there is
// never redone by itself, and the edge stays undrawn (xyflow/xyflow#4888). As a string, so
// the canvas re-renders only when the set changes.
function unmeasuredEnds(s) {
  const stale = new Set();
  const check = (id, type, handleId) => {
    const node = s.nodeLookup.get(id);
    if (!node || node.hidden) return;
    const bounds = node.internals.handleBounds?.[type];
    if (!bounds?.some((h) => handleId == null || h.id === handleId)) stale.add(id);
  };
  for (const e of s.edges) {
    check(e.source, 'source', e.sourceHandle);
    check(e.target, 'target', e.targetHandle);
  }
  return [...stale].sort().join('\n');
}

/** Re-measures the nodes `unmeasuredEnds` names (once per distinct set: a handle that is
 * really missing, such as a branch an edge still names, is not measured over and over). */
function EdgeEndsGuard() {
  const stale = useStore(unmeasuredEnds);
  const updateNodeInternals = useUpdateNodeInternals();
  useEffect(() => {
    if (stale) updateNodeInternals(stale.split('\n'));
  }, [stale, updateNodeInternals]);
  return null;
}

/**
 * The React Flow canvas over the definition. Positions live in `doc.layout`; moving a node is
 * committed when the drag (or keyboard move) ends. Selection is owned by the parent.
 */
export default function Canvas({
  doc, connectors, connections, grouped, runStatus, selection, onSelectionChange,
  onMove, onConnect, onDelete, onDropItem, titleOf,
}) {
  const { screenToFlowPosition } = useReactFlow();
  // Nodes and edges are one state, built together from the definition: React Flow never gets
  // edges whose nodes it does not have yet (nor the other way round), and the first render
  // already holds the opened flow.
  const build = (prev) => ({
    nodes: buildNodes(doc, prev.nodes, { connectors, connections, byNode: grouped.byNode, runStatus, selection, titleOf }),
    edges: buildEdges(doc, prev.edges, { byEdge: grouped.byEdge, selection }),
  });
  const [graph, setGraph] = useState(() => build({ nodes: [], edges: [] }));
  // Fit an opened flow into view once; an empty canvas keeps its viewport so drops land
  // where they are made.
  const [fitOnOpen] = useState(() => !!doc.trigger || doc.steps.length > 0);

  useEffect(() => {
    setGraph(build);
  }, [doc, connectors, connections, grouped, runStatus, selection, titleOf]); // eslint-disable-line react-hooks/exhaustive-deps

  const onNodesChange = useCallback((changes) => {
    const visual = changes.filter((c) => c.type !== 'remove');
    // Dimension changes land here too: the `measured` they set is kept by every rebuild.
    setGraph((g) => ({ ...g, nodes: applyNodeChanges(visual, g.nodes) }));
    const moved = {};
    for (const c of changes) {
      if (c.type === 'position' && c.position && !c.dragging) {
        moved[c.id] = { x: Math.round(c.position.x), y: Math.round(c.position.y) };
      }
    }
    if (Object.keys(moved).length) onMove(moved);
    const selects = changes.filter((c) => c.type === 'select');
    if (selects.length) {
      onSelectionChange((sel) => {
        const set = new Set(sel.nodes);
        for (const c of selects) (c.selected ? set.add(c.id) : set.delete(c.id));
        return { ...sel, nodes: [...set] };
      });
    }
  }, [onMove, onSelectionChange]);

  const onEdgesChange = useCallback((changes) => {
    setGraph((g) => ({ ...g, edges: applyEdgeChanges(changes.filter((c) => c.type !== 'remove'), g.edges) }));
    const selects = changes.filter((c) => c.type === 'select');
    if (selects.length) {
      onSelectionChange((sel) => {
        const set = new Set(sel.edges);
        for (const c of selects) (c.selected ? set.add(c.id) : set.delete(c.id));
        return { ...sel, edges: [...set] };
      });
    }
  }, [onSelectionChange]);

  const handleDelete = useCallback(({ nodes: ns, edges: es }) => {
    onDelete(ns.map((n) => n.id), es.map((e) => ({ from: e.source, to: e.target })));
  }, [onDelete]);

  const onDrop = useCallback((event) => {
    const raw = event.dataTransfer.getData(DND_TYPE);
    if (!raw) return;
    event.preventDefault();
    const position = screenToFlowPosition({ x: event.clientX, y: event.clientY });
    onDropItem(JSON.parse(raw), { x: Math.round(position.x - 90), y: Math.round(position.y - 30) });
  }, [screenToFlowPosition, onDropItem]);

  const onDragOver = useCallback((event) => {
    if (event.dataTransfer.types.includes(DND_TYPE)) {
      event.preventDefault();
      event.dataTransfer.dropEffect = 'move';
    }
  }, []);

  const empty = !doc.trigger && doc.steps.length === 0;
  return (
    <div className="canvas" onDrop={onDrop} onDragOver={onDragOver} data-testid="canvas">
      <ReactFlow
        nodes={graph.nodes}
        edges={graph.edges}
        nodeTypes={NODE_TYPES}
        onNodesChange={onNodesChange}
        onEdgesChange={onEdgesChange}
        onConnect={(c) => onConnect(c.source, c.target, c.sourceHandle ?? undefined)}
        onDelete={handleDelete}
        isValidConnection={(c) => c.source !== c.target && c.target !== TRIGGER_ID}
        deleteKeyCode={['Delete', 'Backspace']}
        fitView={fitOnOpen}
        fitViewOptions={{ maxZoom: 1, padding: 0.2 }}
        minZoom={0.2}
        maxZoom={2}
        proOptions={{ hideAttribution: true }}
        aria-label="Flow canvas"
      >
        <EdgeEndsGuard />
        <Background gap={20} size={1} />
        <Controls showInteractive={false} position="bottom-left" fitViewOptions={{ maxZoom: 1, padding: 0.2 }} />
        <MiniMap pannable zoomable position="bottom-right" ariaLabel="Mini map" nodeColor={minimapColour} nodeStrokeWidth={3} style={{ width: 160, height: 100 }} />
      </ReactFlow>
      {empty && (
        <div className="canvas-empty" role="note">
          <h2>Start with a trigger</h2>
          <p>Drag a trigger such as <strong>Webhook</strong> from the palette onto the canvas — it is how messages arrive. Then add steps and a destination, and join them by dragging from a node’s right edge to the next node.</p>
        </div>
      )}
    </div>
  );
}
