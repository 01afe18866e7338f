// The flow's pinned sample messages (definition.samples, saved with the draft): paste JSON,
// upload a file, pick a retail sample, or capture the payload of a recent real run.
import { useId, useState } from 'react';
import { formatTime, prettyJson } from '../../format.js';
import { ErrorNotice } from '../../components/Notice.jsx';
import { editorApi } from './editorApi.js';
import './mapping.css';

const MAX_UPLOAD_BYTES = 1_000_000;

export function describeSample(sample, index) {
  let hint = '';
  if (sample && typeof sample === 'object' && !Array.isArray(sample)) {
    const key = ['order_number', 'name', 'id', 'sku', 'customerId', 'event', 'shipment_id'].find(
      (k) => sample[k] !== undefined && sample[k] !== null && typeof sample[k] !== 'object',
    );
    if (key) hint = ` · ${key} ${String(sample[key]).slice(0, 24)}`;
  } else if (Array.isArray(sample)) hint = ` · array of ${sample.length}`;
  return `Sample ${index + 1}${hint}`;
}

function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: `Not valid JSON: ${err.message}` };
  }
}

export default function SamplesPanel({ flowId, samples = [], selected = 0, onChange, onSelect }) {
  const ids = useId();
  const [mode, setMode] = useState(null); // null | 'paste' | 'retail' | 'capture'
  const [pasteText, setPasteText] = useState('');
  const [problem, setProblem] = useState(null);
  const [apiError, setApiError] = useState(null);
  const [retail, setRetail] = useState(null); // list of retail samples
  const [recent, setRecent] = useState(null); // recent run payloads
  const [busy, setBusy] = useState(false);
  const list = Array.isArray(samples) ? samples : [];
  const current = list[selected];

  function add(value) {
    const next = [...list, value];
    onChange?.(next);
    onSelect?.(next.length - 1);
    setMode(null);
    setProblem(null);
    setPasteText('');
  }

  function remove() {
    if (!list.length) return;
    const next = list.filter((_, i) => i !== selected);
    onChange?.(next);
    onSelect?.(Math.max(0, Math.min(selected, next.length - 1)));
  }

  async function load(kind) {
    setApiError(null);
    setMode(kind);
    setBusy(true);
    try {
      if (kind === 'retail') setRetail((await editorApi.samples()).items);
      else setRecent((await editorApi.recentPayloads(flowId, 10)).items);
    } catch (err) {
      setApiError(err);
    } finally {
      setBusy(false);
    }
  }

  async function pickRetail(name) {
    setApiError(null);
    try {
      add((await editorApi.sample(name)).payload);
    } catch (err) {
      setApiError(err);
    }
  }

  function upload(e) {
    const file = e.target.files?.[0];
    e.target.value = '';
    if (!file) return;
    if (file.size > MAX_UPLOAD_BYTES) {
      setProblem(`${file.name} is larger than 1 MB; use a smaller sample.`);
      return;
    }
    file.text().then((text) => {
      const parsed = parseJson(text);
      if (parsed.error) setProblem(`${file.name}: ${parsed.error}`);
      else add(parsed.value);
    });
  }

  return (
    <section className="samples-panel" aria-labelledby={`${ids}-title`}>
      <div className="samples-head">
        <h3 id={`${ids}-title`}>Samples</h3>
        {list.length > 0 ? (
          <label className="field samples-select">
            <span className="visually-hidden">Selected sample</span>
            <select value={String(selected)} onChange={(e) => onSelect?.(Number(e.target.value))}>
              {list.map((s, i) => (
                <option key={i} value={String(i)}>
                  {describeSample(s, i)}
                </option>
              ))}
            </select>
          </label>
        ) : (
          <span className="muted small">No sample pinned to this flow yet.</span>
        )}
        {list.length > 0 && (
          <button type="button" className="button button-small button-ghost" onClick={remove}>
            Remove sample
          </button>
        )}
      </div>

      <div className="samples-actions" role="group" aria-label="Add a sample">
        <button type="button" className="button button-small" aria-expanded={mode === 'paste'} onClick={() => setMode(mode === 'paste' ? null : 'paste')}>
          Paste JSON
        </button>
        <label className="button button-small samples-upload">
          Upload file
          <input type="file" accept=".json,application/json" onChange={upload} className="visually-hidden" aria-label="Upload a JSON sample file" />
        </label>
        <button type="button" className="button button-small" aria-expanded={mode === 'retail'} onClick={() => (mode === 'retail' ? setMode(null) : load('retail'))}>
          Retail sample
        </button>
        {flowId !== undefined && flowId !== null && (
          <button type="button" className="button button-small" aria-expanded={mode === 'capture'} onClick={() => (mode === 'capture' ? setMode(null) : load('capture'))}>
            Capture from a recent run
          </button>
        )}
      </div>

      {problem && (
        <p className="text-error small" role="alert">
          {problem}
        </p>
      )}
      <ErrorNotice error={apiError} />

      {mode === 'paste' && (
        <form
          className="samples-paste"
          onSubmit={(e) => {
            e.preventDefault();
            const parsed = parseJson(pasteText);
            if (parsed.error) setProblem(parsed.error);
            else add(parsed.value);
          }}
        >
          <label className="field">
            <span>Sample JSON</span>
            <textarea rows={8} value={pasteText} onChange={(e) => setPasteText(e.target.value)} spellCheck={false} />
          </label>
          <button type="submit" className="button button-small button-primary" disabled={!pasteText.trim()}>
            Add sample
          </button>
        </form>
      )}

      {mode === 'retail' && (
        <ul className="samples-choices" aria-label="Retail samples" aria-busy={busy}>
          {(retail ?? []).map((s) => (
            <li key={s.name}>
              <button type="button" className="button button-small" onClick={() => pickRetail(s.name)}>
                {s.title}
              </button>
              <span className="muted small"> {s.business_object} · {(s.size_bytes / 1024).toFixed(1)} KB</span>
            </li>
          ))}
        </ul>
      )}

      {mode === 'capture' && (
        <ul className="samples-choices" aria-label="Recent runs" aria-busy={busy}>
          {recent && recent.length === 0 && <li className="muted small">This flow has no runs yet.</li>}
          {(recent ?? []).map((r) => (
            <li key={r.run_id}>
              <button type="button" className="button button-small" onClick={() => add(r.payload)}>
                Run #{r.run_id}
              </button>
              <span className="muted small">
                {' '}
                {r.business_key ? `${r.business_key} · ` : ''}
                {r.status} · {formatTime(r.received_at)}
              </span>
            </li>
          ))}
        </ul>
      )}

      {current !== undefined && (
        <details className="samples-preview">
          <summary>Show {describeSample(current, selected)}</summary>
          <pre tabIndex={0}>{prettyJson(current)}</pre>
        </details>
      )}
    </section>
  );
}
