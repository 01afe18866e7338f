// The mapping editor: sample input | JSONata expression (CodeMirror 6) | output, with the
// output recomputed on the server (the workers' own evaluator and sandbox) ~300 ms after
// typing stops. Errors are underlined at their position; in 'map' mode a visual field
// mapper writes and reads simple object constructors.
import { useEffect, useId, useMemo, useRef, useState } from 'react';
import { closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { bracketMatching, indentOnInput } from '@codemirror/language';
import { lintGutter, setDiagnostics } from '@codemirror/lint';
import { Annotation, Compartment, EditorState } from '@codemirror/state';
import { drawSelection, EditorView, highlightActiveLine, keymap, lineNumbers, placeholder } from '@codemirror/view';
import { prettyJson } from '../../format.js';
import { errorRange, formatExpression, lineColumn } from './constructor.js';
import { editorApi } from './editorApi.js';
import { fieldPaths } from './fieldPaths.js';
import FieldMapper from './FieldMapper.jsx';
import { jsonataCompletion, jsonataHighlight, jsonataLanguage } from './jsonataLanguage.js';
import './mapping.css';

export const PREVIEW_DEBOUNCE_MS = 300;
const External = Annotation.define(); // a change that came in through the `value` prop

// JSONata's $boolean() of a condition's result (what a filter step decides on).
function passes(value) {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) return value.some(passes);
  if (typeof value === 'object') return Object.keys(value).length > 0;
  if (typeof value === 'number') return value !== 0;
  if (typeof value === 'string') return value.length > 0;
  return Boolean(value);
}

function describeError(error, text) {
  const code = error.code ? `${error.code}` : 'Error';
  if (error.position === null || error.position === undefined) return { where: null, text: `${code}: ${error.message}` };
  const { line, column } = lineColumn(text, error.position);
  return { where: { line, column, position: error.position }, text: `${code} at line ${line}, column ${column}: ${error.message}` };
}

export default function MappingEditor({ value, onChange, sample, targetSchema = null, label = 'Expression', mode = 'map' }) {
  const hostRef = useRef(null);
  const viewRef = useRef(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  const [text, setText] = useState(value || '');
  // result: { state: 'idle' | 'empty' | 'ok' | 'error', ... }; busy while a request is out.
  const [preview, setPreview] = useState({ state: 'idle' });
  const [busy, setBusy] = useState(false);
  const paths = useMemo(() => fieldPaths(sample), [sample]);
  const pathsRef = useRef(paths);
  pathsRef.current = paths;
  const ids = useId();
  const labelSlot = useRef(null);
  if (!labelSlot.current) labelSlot.current = new Compartment();
  const contentAttributes = (name) =>
    EditorView.contentAttributes.of({ 'aria-label': name, 'aria-describedby': `${ids}-status` });
  const hasSample = sample !== undefined && sample !== null;
  // A parent may pass an equal sample as a new object on every render: compare by content.
  const sampleKey = useMemo(() => JSON.stringify(sample ?? null), [sample]);

  // The CodeMirror view is created once; the value prop is synced into it below.
  useEffect(() => {
    const view = new EditorView({
      parent: hostRef.current,
      state: EditorState.create({
        doc: value || '',
        extensions: [
          lineNumbers(),
          history(),
          drawSelection(),
          indentOnInput(),
          bracketMatching(),
          closeBrackets(),
          highlightActiveLine(),
          jsonataLanguage,
          jsonataHighlight,
          jsonataCompletion(() => pathsRef.current),
          lintGutter(),
          placeholder(mode === 'condition' ? "e.g. financial_status = 'paid'" : 'e.g. { "orderRef": order_number }'),
          keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap]),
          EditorView.lineWrapping,
          labelSlot.current.of(contentAttributes(label)),
          EditorView.updateListener.of((update) => {
            if (!update.docChanged) return;
            const doc = update.state.doc.toString();
            setText(doc);
            if (!update.transactions.some((tr) => tr.annotation(External))) onChangeRef.current?.(doc);
          }),
        ],
      }),
    });
    viewRef.current = view;
    return () => {
      view.destroy();
      viewRef.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  // The accessible name follows the label (a step renamed while its editor is open).
  useEffect(() => {
    viewRef.current?.dispatch({ effects: labelSlot.current.reconfigure(contentAttributes(label)) });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [label]);

  useEffect(() => {
    const view = viewRef.current;
    if (!view) return;
    const current = view.state.doc.toString();
    if ((value || '') !== current) {
      view.dispatch({ changes: { from: 0, to: current.length, insert: value || '' }, annotations: External.of(true) });
    }
  }, [value]);

  /** Replace the whole expression as if the person typed it (undoable, calls onChange). */
  function replaceText(next) {
    const view = viewRef.current;
    if (!view) return;
    const current = view.state.doc.toString();
    if (next === current) return;
    view.dispatch({ changes: { from: 0, to: current.length, insert: next }, userEvent: 'input.replace' });
  }

  // Server preview, debounced; a newer expression or sample aborts the older request, so a
  // stale answer can never overwrite a newer one.
  useEffect(() => {
    const view = viewRef.current;
    if (!text.trim()) {
      setPreview({ state: 'empty' });
      setBusy(false);
      if (view) view.dispatch(setDiagnostics(view.state, []));
      return undefined;
    }
    const controller = new AbortController();
    const timer = setTimeout(async () => {
      setBusy(true);
      try {
        const res = await editorApi.preview(text, JSON.parse(sampleKey), { signal: controller.signal });
        if (controller.signal.aborted) return;
        setBusy(false);
        setPreview({ state: 'ok', output: res.output, duration: res.duration_ms });
        if (viewRef.current) viewRef.current.dispatch(setDiagnostics(viewRef.current.state, []));
      } catch (err) {
        if (err.name === 'AbortError' || controller.signal.aborted) return;
        setBusy(false);
        const error = err.body?.error || { code: err.status ? `HTTP ${err.status}` : 'error', message: err.message, position: null };
        setPreview({ state: 'error', error, described: describeError(error, text) });
        const v = viewRef.current;
        if (!v) return;
        const range = errorRange(v.state.doc.toString(), error.position);
        const diagnostics = range
          ? [{ from: range.from, to: range.to, severity: 'error', source: error.code, message: `${error.code}: ${error.message}` }]
          : [];
        v.dispatch(setDiagnostics(v.state, diagnostics));
      }
    }, PREVIEW_DEBOUNCE_MS);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [text, sampleKey]);

  const shown = preview;
  const statusText = busy
    ? 'Evaluating…'
    : {
        idle: 'Waiting…',
        empty: 'Type an expression to see its output.',
        ok: `Evaluated on the server in ${preview.duration ?? 0} ms`,
        error: 'The expression has an error.',
      }[preview.state];

  return (
    <div className={`mapping-editor mapping-mode-${mode}`}>
      <div className="mapping-panes">
        <section className="mapping-pane mapping-pane-sample" aria-labelledby={`${ids}-sample`}>
          <h3 id={`${ids}-sample`} className="mapping-pane-title">Sample input</h3>
          {hasSample ? (
            <pre className="mapping-json" tabIndex={0} aria-label="Sample input JSON">{prettyJson(sample)}</pre>
          ) : (
            <p className="muted small mapping-empty">No sample yet: add one in the samples panel to see real output.</p>
          )}
        </section>

        <section className="mapping-pane mapping-pane-expression" aria-labelledby={`${ids}-expr`}>
          <div className="mapping-pane-head">
            <h3 id={`${ids}-expr`} className="mapping-pane-title">{mode === 'condition' ? 'Condition' : 'Expression'}</h3>
            <button
              type="button"
              className="button button-small"
              onClick={() => replaceText(formatExpression(viewRef.current?.state.doc.toString() || ''))}
              disabled={!text.trim()}
            >
              Format
            </button>
          </div>
          <div className="mapping-cm" ref={hostRef} data-testid="mapping-expression" />
          <p id={`${ids}-status`} className="mapping-status small muted" aria-live="polite" data-state={busy ? 'loading' : preview.state}>
            {statusText}
          </p>
        </section>

        <section className="mapping-pane mapping-pane-output" aria-labelledby={`${ids}-out`}>
          <h3 id={`${ids}-out`} className="mapping-pane-title">{mode === 'condition' ? 'Result' : 'Output'}</h3>
          {shown.state === 'error' ? (
            <div
              className="mapping-error"
              role="alert"
              data-testid="mapping-error"
              data-code={shown.error.code}
              data-position={shown.error.position ?? ''}
            >
              <strong>{shown.described.text}</strong>
            </div>
          ) : shown.state === 'ok' ? (
            <>
              {mode === 'condition' && (
                <p className={`mapping-verdict ${passes(shown.output) ? 'is-pass' : 'is-fail'}`}>
                  {passes(shown.output) ? 'Passes: the message continues' : 'Filtered out: the message stops here'}
                </p>
              )}
              <pre className="mapping-json" tabIndex={0} data-testid="mapping-output" aria-label="Output JSON">
                {shown.output === null || shown.output === undefined ? '(nothing: no field matched)' : prettyJson(shown.output)}
              </pre>
            </>
          ) : (
            <p className="muted small mapping-empty">{statusText}</p>
          )}
        </section>
      </div>

      {mode === 'map' && (
        <FieldMapper expression={text} onChange={replaceText} sample={sample} targetSchema={targetSchema} />
      )}
    </div>
  );
}
