// Test run: the whole draft on the selected sample, every destination simulated (nothing is
// sent, nothing is stored). Shows each step's input, output and time, and exactly what each
// destination would receive; the result goes to onResult so the canvas can mark failures.
import { useEffect, useId, useRef, useState } from 'react';
import { formatDuration, prettyJson } from '../../format.js';
import { ErrorNotice } from '../../components/Notice.jsx';
import StatusBadge from '../../components/StatusBadge.jsx';
import { editorApi } from '../mapping/editorApi.js';
import './testrun.css';

function Json({ label, value }) {
  return (
    <figure className="tr-json">
      <figcaption>{label}</figcaption>
      {value === null || value === undefined ? (
        <p className="muted small">none</p>
      ) : (
        <pre tabIndex={0}>{prettyJson(value)}</pre>
      )}
    </figure>
  );
}

function errorText(error) {
  if (!error) return '';
  const where = error.line ? ` at line ${error.line}, column ${error.column}` : '';
  return `${error.code || 'error'}${where}: ${error.message || ''}`;
}

export default function TestRunPanel({ flowId, definition, sample, onResult }) {
  const ids = useId();
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);
  const controller = useRef(null);
  useEffect(() => () => controller.current?.abort(), []);

  async function run() {
    controller.current?.abort();
    const ctl = new AbortController();
    controller.current = ctl;
    setRunning(true);
    setError(null);
    const body = { definition };
    if (sample !== undefined && sample !== null) body.sample = sample;
    try {
      const res = await editorApi.testRun(flowId, body, { signal: ctl.signal });
      if (ctl.signal.aborted) return;
      setResult(res);
      onResult?.(res);
    } catch (err) {
      if (err.name === 'AbortError' || ctl.signal.aborted) return;
      setResult(null);
      setError(err);
      onResult?.(null);
    } finally {
      if (!ctl.signal.aborted) setRunning(false);
    }
  }

  const problems = error?.body?.problems ?? [];
  const failed = result?.steps.filter((s) => s.status === 'failed') ?? [];

  return (
    <section className="test-run" aria-labelledby={`${ids}-title`}>
      <div className="tr-head">
        <h3 id={`${ids}-title`}>Test run</h3>
        <button type="button" className="button button-primary button-small" onClick={run} disabled={running || !flowId}>
          {running ? 'Running…' : 'Run test'}
        </button>
      </div>
      <p className="muted small tr-intro">
        Runs the draft on the selected sample. Destinations are simulated: nothing is sent and no run is recorded.
      </p>

      {error && <ErrorNotice error={error} lead="Test run failed." />}
      {problems.length > 0 && (
        <ul className="problem-errors text-error">
          {problems.map((p, i) => (
            <li key={i}>
              <code>{p.path || '/'}</code> {p.message}
            </li>
          ))}
        </ul>
      )}

      {result && (
        <div className="tr-result" aria-live="polite" data-testid="test-run-result">
          <p className={`tr-verdict ${result.ok ? 'is-ok' : 'is-failed'}`} role="status">
            {result.ok
              ? `Passed: a real run would end as “${result.status.replace(/_/g, ' ')}”.`
              : `Failed at ${failed.map((s) => s.id).join(', ')}.`}{' '}
            <span className="muted">{formatDuration(result.duration_ms)}</span>
          </p>

          <h4 className="tr-subtitle">Steps</h4>
          <ol className="tr-steps">
            {result.steps.map((step) => (
              <li key={step.id} className={`tr-step tr-step-${step.status}`} data-step={step.id}>
                <details open={step.status === 'failed'}>
                  <summary>
                    <code className="tr-step-id">{step.id}</code>
                    {step.type && <span className="muted small">{step.type}</span>}
                    <StatusBadge status={step.status} />
                    <span className="muted small tr-time">{step.status === 'skipped' ? '' : formatDuration(step.duration_ms)}</span>
                  </summary>
                  {step.error && (
                    <p className="text-error small tr-error" role="alert">
                      {errorText(step.error)}
                    </p>
                  )}
                  {step.status === 'skipped' ? (
                    <p className="muted small">Not reached: an earlier step stopped the message.</p>
                  ) : (
                    <div className="tr-io">
                      <Json label="Input" value={step.input} />
                      <Json label="Output" value={step.output} />
                    </div>
                  )}
                </details>
              </li>
            ))}
          </ol>

          <h4 className="tr-subtitle">What the destinations would receive</h4>
          {result.deliveries.length === 0 ? (
            <p className="muted small">No destination was reached.</p>
          ) : (
            <ul className="tr-deliveries">
              {result.deliveries.map((d) => (
                <li key={d.step} className="tr-delivery" data-step={d.step}>
                  <p className="tr-delivery-head">
                    <code>{d.step}</code> → <strong>{d.connection || d.connector || 'destination'}</strong>
                    {d.target && <span className="muted small"> {d.target}</span>}
                  </p>
                  <Json label={`Would send to ${d.connection || d.step}`} value={d.would_send} />
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
