import { ReactFlowProvider } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { api } from '../api.js';
import Link from '../components/Link.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import SubmitDialog from '../governance/SubmitDialog.jsx';
import { navigate } from '../router.js';
import Canvas from './Canvas.jsx';
import Inspector from './Inspector.jsx';
import Palette from './Palette.jsx';
import { SamplesPanel, TestRunPanel } from './parts.jsx';
import { useHistory } from './useHistory.js';
import {
  TRIGGER_ID, addNode, connect, disconnect, emptyDefinition, groupProblems, moveNodes,
  nodeOf, pathTo, removeNodes, stepTypes, updateStep,
} from './model.js';
import './editor.css';

const AUTOSAVE_MS = 700;

function useToasts() {
  const [toasts, setToasts] = useState([]);
  // A toast with a `key` replaces the previous one with that key (one test-run verdict).
  const notify = useCallback((toast) => {
    const id = Math.random().toString(36).slice(2);
    setToasts((ts) => [...ts.filter((t) => !toast.key || t.key !== toast.key), { id, ...toast }]);
    setTimeout(() => setToasts((ts) => ts.filter((t) => t.id !== id)), toast.kind === 'error' ? 8000 : 4000);
  }, []);
  const dismiss = useCallback((id) => setToasts((ts) => ts.filter((t) => t.id !== id && t.key !== id)), []);
  return { toasts, notify, dismiss };
}

function Toasts({ toasts, dismiss }) {
  return (
    <div className="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} className={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
          <span>{t.text}</span>
          <button type="button" className="toast-close" aria-label="Dismiss" onClick={() => dismiss(t.id)}>×</button>
        </div>
      ))}
    </div>
  );
}

/** Loads everything the editor needs: flow, its draft (or latest version), catalogues. */
async function loadAll(flowId, signal) {
  const [flow, connectors, flowSchema, connections, canonical] = await Promise.all([
    api(`/api/v1/flows/${flowId}`, { signal }),
    api('/api/v1/connectors', { signal }),
    api('/api/v1/schemas/flow', { signal }),
    api('/api/v1/connections', { signal }),
    api('/api/v1/schemas', { signal }).catch(() => ({ items: [] })),
  ]);
  let doc = emptyDefinition();
  let revision = 0; // "no draft yet": a draft someone else creates meanwhile is a conflict
  let draftVersion = null;
  let basedOn = null;
  const versions = [...(flow.versions ?? [])].sort((a, b) => b.number - a.number);
  const source = versions.find((v) => v.status === 'draft') ?? versions[0];
  if (source) {
    const version = await api(`/api/v1/flows/${flowId}/versions/${source.number}`, { signal });
    doc = { ...emptyDefinition(), ...version.definition };
    if (version.status === 'draft') {
      revision = version.revision;
      draftVersion = version.number;
    } else {
      basedOn = { number: version.number, status: version.status };
    }
  }
  return {
    flow, doc, revision, draftVersion, basedOn,
    connectors: connectors.items ?? [],
    flowSchema,
    connections: connections.items ?? [],
    canonicalSchemas: canonical.items ?? [],
  };
}

function isTyping(target) {
  return target?.closest?.('input, textarea, select, [contenteditable="true"], .cm-editor');
}

function EditorInner({ flowId }) {
  const [boot, setBoot] = useState({ loading: true, error: null, data: null });
  const history = useHistory(emptyDefinition());
  const doc = history.value;
  const [connections, setConnections] = useState([]);
  const [problems, setProblems] = useState([]);
  const [save, setSave] = useState({ state: 'saved', revision: 0, version: null, conflict: null, error: null });
  const [selection, setSelection] = useState({ nodes: [], edges: [] });
  const [tab, setTab] = useState('inspector');
  const [sampleIndex, setSampleIndex] = useState(0);
  const [runStatus, setRunStatus] = useState(null);
  const [submitOpen, setSubmitOpen] = useState(false);
  const [stepInput, setStepInput] = useState(undefined);
  const { toasts, notify, dismiss } = useToasts();

  const savedDoc = useRef(null); // the document the server has
  // What the server told us last, updated the moment a response arrives (not on the next
  // render): a save started right after another one returns must send the new revision.
  const server = useRef({ revision: 0, version: null, conflict: null });
  const docRef = useRef(doc);
  docRef.current = doc;
  const inFlight = useRef(false); // one PUT at a time
  const saveAgain = useRef(false); // a save was asked for while one was in flight

  const reload = useCallback(async () => {
    setBoot((b) => ({ ...b, loading: true, error: null }));
    try {
      const data = await loadAll(flowId);
      history.reset(data.doc);
      savedDoc.current = data.doc;
      server.current = { revision: data.revision, version: data.draftVersion, conflict: null };
      saveAgain.current = false;
      setConnections(data.connections);
      setSave({ state: 'saved', revision: data.revision, version: data.draftVersion, conflict: null, error: null });
      setBoot({ loading: false, error: null, data });
      setSelection({ nodes: [], edges: [] });
      document.title = `${data.flow.name} · Editor · Flowgate`;
      api('/api/v1/flows/validate', { method: 'POST', body: { definition: data.doc } }).then(
        (r) => setProblems(r.problems),
        () => {},
      );
    } catch (error) {
      setBoot({ loading: false, error, data: null });
    }
  }, [flowId, history.reset]); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => { reload(); }, [reload]);

  // ---- autosave -------------------------------------------------------------------------
  const doSave = useCallback(async ({ force = false } = {}) => {
    if (inFlight.current) {
      // Serialized: the running save sends the next one when it is done, with its revision.
      saveAgain.current = true;
      return;
    }
    const known = server.current;
    if (known.conflict && !force) return;
    const definition = docRef.current;
    if (definition === savedDoc.current && !force) return;
    inFlight.current = true;
    saveAgain.current = false;
    setSave((s) => ({ ...s, state: 'saving', error: null }));
    const revision = force && known.conflict ? known.conflict.current_revision : known.revision;
    let next = false;
    try {
      const r = await api(`/api/v1/flows/${flowId}/draft?allow_problems=true`, {
        method: 'PUT',
        body: { definition, revision },
      });
      server.current = { revision: r.revision, version: r.version, conflict: null };
      savedDoc.current = definition;
      setProblems(r.problems);
      const changedMeanwhile = docRef.current !== definition;
      setSave({
        state: changedMeanwhile ? 'dirty' : 'saved',
        revision: r.revision, version: r.version, conflict: null, error: null,
      });
      next = changedMeanwhile;
    } catch (error) {
      if (error.status === 409) {
        const conflict = { message: error.message, current_revision: error.body?.current_revision };
        server.current = { ...server.current, conflict };
        setSave((s) => ({ ...s, state: 'conflict', conflict }));
      } else {
        setSave((s) => ({ ...s, state: 'error', error }));
        notify({ kind: 'error', text: `Could not save the draft: ${error.message}` });
      }
    } finally {
      inFlight.current = false;
    }
    // An autosave that came due while this one ran is sent now, with the new revision.
    // (If it has not come due yet, its debounce timer is still pending and will send it.)
    const again = saveAgain.current;
    saveAgain.current = false;
    if (next && again) doSaveRef.current();
  }, [flowId, notify]);

  const doSaveRef = useRef(doSave);
  doSaveRef.current = doSave;

  useEffect(() => {
    if (!boot.data) return undefined;
    if (doc === savedDoc.current) {
      // Undone back to what the server has: nothing to save.
      setSave((s) => (s.state === 'dirty' ? { ...s, state: 'saved' } : s));
      return undefined;
    }
    setSave((s) => (s.state === 'conflict' || s.state === 'saving' ? s : { ...s, state: 'dirty' }));
    const timer = setTimeout(() => doSave(), AUTOSAVE_MS);
    return () => clearTimeout(timer);
  }, [doc, boot.data, doSave]);

  const unsaved = save.state !== 'saved';
  useEffect(() => {
    if (!unsaved) return undefined;
    const warn = (e) => { e.preventDefault(); e.returnValue = ''; };
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [unsaved]);

  // Links inside the app (header, "← Flows") ask before leaving unsaved changes behind.
  useEffect(() => {
    if (!unsaved) return undefined;
    const onClick = (e) => {
      const link = e.target.closest?.('a[href]');
      if (!link || link.target === '_blank' || e.defaultPrevented) return;
      if (!window.confirm('Your latest changes are not saved yet. Leave anyway?')) {
        e.preventDefault();
        e.stopPropagation();
      }
    };
    document.addEventListener('click', onClick, true);
    return () => document.removeEventListener('click', onClick, true);
  }, [unsaved]);

  // ---- edits ------------------------------------------------------------------------------
  const data = boot.data;
  const connectors = useMemo(() => data?.connectors ?? [], [data]);
  const types = useMemo(() => stepTypes(data?.flowSchema), [data]);
  const grouped = useMemo(() => groupProblems(problems), [problems]);
  const titleOf = useCallback((id) => {
    const n = nodeOf(doc, id);
    if (!n) return id;
    if (id === TRIGGER_ID) return connectors.find((c) => c.key === n.triggerType)?.name ?? 'Trigger';
    return n.name || id;
  }, [doc, connectors]);

  const place = useCallback((item, position) => {
    let created;
    history.set((d) => {
      if (item.kind === 'trigger' && d.trigger) return d;
      const r = addNode(d, item, position, connectors);
      created = r.id;
      return r.doc;
    });
    setTimeout(() => { if (created) { setSelection({ nodes: [created], edges: [] }); setTab('inspector'); } }, 0);
  }, [history, connectors]);

  const addFromPalette = useCallback((item) => {
    const n = doc.steps.length + (doc.trigger ? 1 : 0);
    place(item, item.kind === 'trigger' ? { x: 40, y: 120 } : { x: 40 + (n % 5) * 240, y: 120 + Math.floor(n / 5) * 150 });
  }, [doc, place]);

  const onMove = useCallback((moved) => history.set((d) => moveNodes(d, moved), { coalesce: `move:${Object.keys(moved).join(',')}` }), [history]);
  const onConnect = useCallback((from, to, kase) => history.set((d) => connect(d, from, to, kase)), [history]);
  const onDisconnect = useCallback((from, to) => history.set((d) => disconnect(d, from, to)), [history]);
  const onDelete = useCallback((nodeIds, edges) => {
    history.set((d) => {
      let next = d;
      for (const e of edges) next = disconnect(next, e.from, e.to);
      return nodeIds.length ? removeNodes(next, nodeIds) : next;
    });
    setSelection({ nodes: [], edges: [] });
  }, [history]);

  const selectedId = selection.nodes.length === 1 ? selection.nodes[0] : null;
  const selectedNode = selectedId ? nodeOf(doc, selectedId) : null;
  const selectedIndex = selectedNode && selectedId !== TRIGGER_ID ? doc.steps.findIndex((s) => s.id === selectedId) : -1;
  const onChangeNode = useCallback((patch, coalesce) => {
    if (!selectedId) return;
    history.set((d) => updateStep(d, selectedId, patch), { coalesce: coalesce ?? null });
  }, [history, selectedId]);

  const samples = Array.isArray(doc.samples) ? doc.samples : [];
  const sample = samples[Math.min(sampleIndex, samples.length - 1)];

  // The input the selected step receives: the sample run through the maps before it.
  useEffect(() => {
    if (!selectedId) return undefined;
    const path = pathTo(doc, selectedId).slice(0, -1).map((id) => nodeOf(doc, id)).filter((n) => n && n.type === 'map');
    let cancelled = false;
    const timer = setTimeout(async () => {
      let value = sample;
      for (const step of path) {
        if (value === undefined) break;
        try {
          value = (await api('/api/v1/mappings/preview', { method: 'POST', body: { expression: step.expression, input: value } })).output;
        } catch {
          value = undefined;
        }
      }
      if (!cancelled) setStepInput(value);
    }, 250);
    return () => { cancelled = true; clearTimeout(timer); };
  }, [doc, selectedId, sample]);

  // Target schema for a map: the canonical schema its destination declares, if any.
  const [targetSchema, setTargetSchema] = useState(null);
  const declared = useMemo(() => {
    if (!selectedNode || selectedNode.type !== 'map') return null;
    const next = doc.edges.filter((e) => e.from === selectedNode.id).map((e) => nodeOf(doc, e.to)).find((n) => n?.input_schema);
    return next ? `${next.input_schema.name}@${next.input_schema.version}` : null;
  }, [doc, selectedNode]);
  useEffect(() => {
    if (!declared) { setTargetSchema(null); return; }
    const [name, version] = declared.split('@');
    api(`/api/v1/schemas/${encodeURIComponent(name)}?version=${version}`).then(setTargetSchema, () => setTargetSchema(null));
  }, [declared]);

  const reloadConnections = useCallback(() => {
    api('/api/v1/connections').then((r) => setConnections(r.items ?? []), (err) => notify({ kind: 'error', text: err.message }));
  }, [notify]);

  // Keyboard: undo / redo (not while typing in a field: fields have their own undo).
  useEffect(() => {
    function onKey(e) {
      if (!(e.ctrlKey || e.metaKey) || isTyping(e.target)) return;
      const key = e.key.toLowerCase();
      if (key === 'z' && !e.shiftKey) { e.preventDefault(); history.undo(); }
      else if ((key === 'z' && e.shiftKey) || key === 'y') { e.preventDefault(); history.redo(); }
    }
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [history]);

  if (boot.loading && !data) return <Loading>Loading the editor…</Loading>;
  if (boot.error) return <ErrorNotice error={boot.error} onRetry={reload} lead="The flow could not be opened." />;

  const problemCount = problems.length;
  let submitBlocked = null;
  if (problemCount > 0) submitBlocked = `Fix ${problemCount} problem${problemCount === 1 ? '' : 's'} first.`;
  else if (save.state === 'conflict') submitBlocked = 'Resolve the save conflict first.';
  else if (save.state !== 'saved') submitBlocked = 'Waiting for the draft to be saved…';
  else if (save.version === null) submitBlocked = 'Make a change to start a draft.';

  const saveLabel = {
    saved: save.version === null ? 'No draft yet' : `Draft v${save.version} saved · rev ${save.revision}`,
    dirty: 'Unsaved changes…',
    saving: 'Saving…',
    error: 'Not saved',
    conflict: 'Conflict: not saved',
  }[save.state];

  return (
    <div className="editor">
      <div className="editor-toolbar">
        <Link to="/flows" className="button button-ghost button-small">← Flows</Link>
        <h1 className="editor-title">{data.flow.name}</h1>
        {data.basedOn && save.version === null && (
          <span className="muted small">Editing a copy of v{data.basedOn.number} ({data.basedOn.status})</span>
        )}
        <span className={`save-state save-${save.state}`} role="status" aria-live="polite" data-testid="save-state">
          {save.state === 'saving' && <span className="spinner" aria-hidden="true" />}
          {saveLabel}
        </span>
        <div className="editor-toolbar-actions">
          <button type="button" className="button button-small" onClick={history.undo} disabled={!history.canUndo} aria-keyshortcuts="Control+Z">Undo</button>
          <button type="button" className="button button-small" onClick={history.redo} disabled={!history.canRedo} aria-keyshortcuts="Control+Shift+Z">Redo</button>
          <button type="button" className={`button button-small ${tab === 'samples' ? 'is-active' : ''}`} onClick={() => setTab('samples')}>Samples</button>
          <button type="button" className={`button button-small ${tab === 'testrun' ? 'is-active' : ''}`} onClick={() => setTab('testrun')}>Test run</button>
          <span className="submit-wrap">
            <button type="button" className="button button-primary" disabled={!!submitBlocked}
              aria-describedby="submit-reason" onClick={() => setSubmitOpen(true)}>Submit for review</button>
            <span id="submit-reason" className="submit-reason">{submitBlocked ?? 'Ready to submit.'}</span>
          </span>
        </div>
      </div>

      {save.state === 'conflict' && (
        <div className="notice notice-error editor-conflict" role="alert">
          <div>
            <strong>Someone else saved this flow while you were editing.</strong> Your latest changes are not saved
            and nothing was overwritten. {save.conflict?.message}
          </div>
          <div className="inspector-inline">
            <button type="button" className="button button-small" onClick={() => {
              savedDoc.current = null;
              reload();
            }}>Load their version</button>
            <button type="button" className="button button-small button-danger" onClick={() => doSave({ force: true })}>
              Overwrite with mine
            </button>
          </div>
        </div>
      )}

      <div className="editor-body">
        <Palette types={types} connectors={connectors} hasTrigger={!!doc.trigger} onAdd={addFromPalette} />
        <div className="editor-center">
          <Canvas
            doc={doc}
            connectors={connectors}
            connections={connections}
            grouped={grouped}
            runStatus={runStatus}
            selection={selection}
            onSelectionChange={setSelection}
            onMove={onMove}
            onConnect={onConnect}
            onDelete={onDelete}
            onDropItem={place}
            titleOf={titleOf}
          />
          <section className="problems-strip" aria-label="Problems">
            <h2>{problemCount === 0 ? 'No problems' : `Problems (${problemCount})`}</h2>
            {problemCount === 0 ? (
              <p className="muted small">The flow is complete. Test-run it with a sample, then submit it for review.</p>
            ) : (
              <ul>
                {problems.map((p) => (
                  <li key={p.path + p.code + p.message}>
                    {p.step ? (
                      <button type="button" className="link-button" onClick={() => { setSelection({ nodes: [p.step], edges: [] }); setTab('inspector'); }}>
                        {titleOf(p.step)}
                      </button>
                    ) : <span className="muted">{p.edge !== undefined ? 'Connection' : 'Flow'}</span>}
                    : {p.message}
                  </li>
                ))}
              </ul>
            )}
          </section>
        </div>
        <aside className={`side-panel ${selectedNode && ['map', 'filter'].includes(selectedNode.type) && tab === 'inspector' ? 'is-wide' : ''}`} aria-label="Side panel">
          <div className="side-tabs" role="tablist" aria-label="Panels">
            {[['inspector', 'Inspector'], ['samples', `Samples (${samples.length})`], ['testrun', 'Test run']].map(([key, label]) => (
              <button key={key} type="button" role="tab" aria-selected={tab === key} className={tab === key ? 'is-active' : ''} onClick={() => setTab(key)}>{label}</button>
            ))}
          </div>
          <div className="side-body" role="tabpanel">
            {tab === 'inspector' && (
              <Inspector
                doc={doc}
                node={selectedNode}
                index={selectedIndex}
                connectors={connectors}
                connections={connections}
                flowSchema={data.flowSchema}
                canonicalSchemas={data.canonicalSchemas}
                problems={selectedId ? [...(grouped.byNode[selectedId] ?? [])] : []}
                sample={stepInput}
                targetSchema={targetSchema}
                onChange={onChangeNode}
                onConnect={onConnect}
                onDisconnect={onDisconnect}
                onDelete={(id) => onDelete([id], [])}
                onConnectionsChanged={reloadConnections}
                notify={notify}
                titleOf={titleOf}
              />
            )}
            {tab === 'samples' && (
              <SamplesPanel
                flowId={flowId}
                samples={samples}
                selected={Math.max(0, Math.min(sampleIndex, samples.length - 1))}
                onChange={(next) => history.set((d) => ({ ...d, samples: next }))}
                onSelect={setSampleIndex}
              />
            )}
            {tab === 'testrun' && (
              <TestRunPanel
                flowId={flowId}
                definition={doc}
                sample={sample}
                onResult={(result) => {
                  const status = {};
                  for (const s of result?.steps ?? []) {
                    // Items of a split run as `step[0]`, `step[1]`…: a failed item marks the step.
                    const id = s.id.replace(/(\[\d+\])+$/, '');
                    if (status[id] !== 'failed') status[id] = s.status;
                  }
                  setRunStatus(status);
                  const failed = (result?.steps ?? []).filter((s) => s.status === 'failed');
                  if (failed.length) notify({ key: 'testrun', kind: 'error', text: `Test run failed at ${failed.map((s) => titleOf(s.id)).join(', ')}.` });
                  else dismiss('testrun');
                }}
              />
            )}
          </div>
        </aside>
      </div>

      {submitOpen && (
        <SubmitDialog
          flowId={flowId}
          version={save.version}
          definition={doc}
          onClose={() => setSubmitOpen(false)}
          onSubmitted={(version) => {
            setSubmitOpen(false);
            notify({ kind: 'success', text: `Version ${version?.number ?? save.version} was submitted for review.` });
            // The submitted version is frozen: the next change starts a new draft.
            server.current = { revision: 0, version: null, conflict: null };
            setSave((s) => ({ ...s, state: 'saved', version: null, revision: 0 }));
            navigate(`/flows?submitted=${flowId}`);
          }}
        />
      )}
      <Toasts toasts={toasts} dismiss={dismiss} />
    </div>
  );
}

export default function EditorPage({ flowId }) {
  return (
    <ReactFlowProvider>
      <EditorInner key={flowId} flowId={Number(flowId)} />
    </ReactFlowProvider>
  );
}
