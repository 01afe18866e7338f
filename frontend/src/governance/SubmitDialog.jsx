// Submit a draft for review: the integration contract form (required to submit), then submit.
// Props: { flowId, version /* number */, definition, onSubmitted(version), onClose() }.
import { useEffect, useRef, useState } from 'react';
import { gov } from './govApi.js';
import './governance.css';

const OBJECTS = ['order', 'product', 'stock', 'customer', 'shipment', 'price', 'other'];
const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

export function emptyContract() {
  return {
    source_system_id: '',
    destination_system_ids: [],
    business_objects: [],
    direction: 'one_way',
    trigger: '',
    frequency: '',
    volume_per_day: '',
    peak_per_minute: '',
    fields: [],
    sla: {
      max_latency_seconds: '',
      business_hours: { timezone: 'Europe/Berlin', days: [0, 1, 2, 3, 4], start: '08:00', end: '20:00' },
    },
    error_policy: { max_attempts: '', max_age_seconds: '', dead_letter_handling: '' },
    business_owner_id: '',
    technical_owner_id: '',
    on_call: { name: '', email: '', webhook_url: '' },
  };
}

/** The stored contract merged over an empty form (every input has a value). */
function toForm(contract) {
  const base = emptyContract();
  if (!contract) return base;
  return {
    ...base,
    ...contract,
    sla: {
      ...base.sla,
      ...(contract.sla || {}),
      business_hours: { ...base.sla.business_hours, ...(contract.sla?.business_hours || {}) },
    },
    error_policy: { ...base.error_policy, ...(contract.error_policy || {}) },
    on_call: { ...base.on_call, ...(contract.on_call || {}), webhook_url: contract.on_call?.webhook_url || '' },
  };
}

const INT_KEYS = new Set([
  'source_system_id', 'volume_per_day', 'peak_per_minute', 'business_owner_id', 'technical_owner_id',
  'max_latency_seconds', 'max_attempts', 'max_age_seconds', 'destination_system_id',
]);

/** Form state → API contract: empty inputs are left out (the server lists what is missing). */
export function toPayload(form) {
  const clean = (value, key) => {
    if (Array.isArray(value)) return value.map((v) => clean(v, null));
    if (value && typeof value === 'object') {
      const out = {};
      for (const [k, v] of Object.entries(value)) {
        const c = clean(v, k);
        if (c !== undefined) out[k] = c;
      }
      return out;
    }
    if (value === '' || value === null || value === undefined) return key === 'webhook_url' ? null : undefined;
    if (key && INT_KEYS.has(key)) {
      const n = Number(value);
      return Number.isFinite(n) ? n : value;
    }
    return value;
  };
  const out = clean(form, null);
  if (out.on_call && out.on_call.webhook_url === undefined) out.on_call.webhook_url = null;
  return out;
}

function Text({ label, value, onChange, type = 'text', ...rest }) {
  return (
    <label className="field">
      {label}
      <input type={type} value={value ?? ''} onChange={(e) => onChange(e.target.value)} {...rest} />
    </label>
  );
}

function Select({ label, value, onChange, options, placeholder = 'Choose…' }) {
  return (
    <label className="field">
      {label}
      <select value={value ?? ''} onChange={(e) => onChange(e.target.value === '' ? '' : Number(e.target.value))}>
        <option value="">{placeholder}</option>
        {options.map((o) => (
          <option key={o.id} value={o.id}>{o.label}</option>
        ))}
      </select>
    </label>
  );
}

function toggle(list, value) {
  return list.includes(value) ? list.filter((v) => v !== value) : [...list, value].sort((a, b) => a - b || 0);
}

/** What a 422 from save/submit says, as lines a person can act on. */
export function refusalLines(error) {
  const body = error?.body || {};
  const lines = [];
  if (Array.isArray(body.missing) && body.missing.length) {
    lines.push(...body.missing.map((m) => (m ? `Missing: ${m}` : 'Missing: the whole contract')));
  }
  for (const p of body.contract_problems || []) if (p.code !== 'missing') lines.push(p.message);
  for (const p of body.problems || []) lines.push(typeof p === 'string' ? p : `${p.path || ''} ${p.message}`.trim());
  for (const t of body.sample_tests || []) lines.push(`Sample test ${t.name} fails (step ${t.step})`);
  return lines;
}

export default function SubmitDialog({ flowId, version, onSubmitted, onClose }) {
  const [form, setForm] = useState(emptyContract());
  const [systems, setSystems] = useState([]);
  const [users, setUsers] = useState([]);
  const [loading, setLoading] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const [newField, setNewField] = useState({ destination_system_id: '', field: '', pii: false });
  const dialogRef = useRef(null);

  useEffect(() => {
    let live = true;
    Promise.all([gov.version(flowId, version), gov.systems(), gov.users()]).then(
      ([v, s, u]) => {
        if (!live) return;
        setForm(toForm(v.contract));
        setSystems(s.items || []);
        setUsers(u.items || []);
        setLoading(false);
      },
      (err) => {
        if (!live) return;
        setError(err);
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [flowId, version]);

  useEffect(() => {
    dialogRef.current?.querySelector('select, input')?.focus();
    const onKey = (e) => e.key === 'Escape' && onClose?.();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [loading, onClose]);

  const set = (path, value) => {
    setSaved(false);
    setForm((f) => {
      const next = structuredClone(f);
      let node = next;
      for (const key of path.slice(0, -1)) node = node[key];
      node[path[path.length - 1]] = value;
      return next;
    });
  };

  const systemOptions = systems.map((s) => ({ id: s.id, label: s.name }));
  const userOptions = users.map((u) => ({ id: u.id, label: u.name ? `${u.name} (${u.email})` : u.email }));
  const systemName = (id) => systems.find((s) => s.id === id)?.name ?? `system ${id}`;

  async function run(action) {
    setBusy(true);
    setError(null);
    try {
      if (action === 'save') {
        await gov.saveContract(flowId, version, toPayload(form));
        setSaved(true);
      } else {
        const submitted = await gov.submit(flowId, version, toPayload(form));
        onSubmitted?.(submitted);
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const lines = refusalLines(error);
  return (
    <div className="gov-dialog-backdrop">
      <div className="gov-dialog" role="dialog" aria-modal="true" aria-labelledby="submit-title" ref={dialogRef}>
        <h2 id="submit-title">Submit version {version} for review</h2>
        <p className="gov-muted">
          The integration contract is required to submit. Owners review it together with the changes; the live
          version keeps running until this one is approved.
        </p>
        {loading ? (
          <p>Loading…</p>
        ) : (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              run('submit');
            }}
          >
            <fieldset className="gov-fieldset">
              <legend>Systems and data</legend>
              <div className="gov-grid">
                <Select label="Source system" value={form.source_system_id} options={systemOptions}
                  onChange={(v) => set(['source_system_id'], v)} />
                <label className="field">
                  Direction
                  <select value={form.direction} onChange={(e) => set(['direction'], e.target.value)}>
                    <option value="one_way">One way</option>
                    <option value="two_way">Two way</option>
                  </select>
                </label>
              </div>
              <div className="field">
                Destination systems
                <div className="gov-checks" role="group" aria-label="Destination systems">
                  {systems.map((s) => (
                    <label key={s.id}>
                      <input type="checkbox" checked={form.destination_system_ids.includes(s.id)}
                        onChange={() => set(['destination_system_ids'], toggle(form.destination_system_ids, s.id))} />
                      {s.name}
                    </label>
                  ))}
                </div>
              </div>
              <div className="field">
                Business objects
                <div className="gov-checks" role="group" aria-label="Business objects">
                  {OBJECTS.map((o) => (
                    <label key={o}>
                      <input type="checkbox" checked={form.business_objects.includes(o)}
                        onChange={() => set(['business_objects'], form.business_objects.includes(o)
                          ? form.business_objects.filter((x) => x !== o) : [...form.business_objects, o])} />
                      {o}
                    </label>
                  ))}
                </div>
              </div>
              <div className="field">
                Fields sent
                <table className="table">
                  <thead>
                    <tr><th>Destination</th><th>Field</th><th>PII</th><th><span className="visually-hidden">Remove</span></th></tr>
                  </thead>
                  <tbody>
                    {form.fields.map((f, i) => (
                      <tr key={`${f.destination_system_id}-${f.field}-${i}`}>
                        <td>{systemName(f.destination_system_id)}</td>
                        <td><code>{f.field}</code></td>
                        <td>
                          <input type="checkbox" aria-label={`${f.field} is personal data (PII)`} checked={!!f.pii}
                            onChange={(e) => set(['fields', i, 'pii'], e.target.checked)} />
                        </td>
                        <td>
                          <button type="button" className="button button-small"
                            onClick={() => set(['fields'], form.fields.filter((_, j) => j !== i))}>
                            Remove {f.field}
                          </button>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
                <div className="gov-row">
                  <Select label="Field destination" value={newField.destination_system_id} options={systemOptions}
                    onChange={(v) => setNewField((n) => ({ ...n, destination_system_id: v }))} />
                  <Text label="Field name" value={newField.field}
                    onChange={(v) => setNewField((n) => ({ ...n, field: v }))} />
                  <label className="gov-checks">
                    <input type="checkbox" checked={newField.pii}
                      onChange={(e) => setNewField((n) => ({ ...n, pii: e.target.checked }))} />
                    PII
                  </label>
                  <button type="button" className="button"
                    disabled={!newField.field.trim() || newField.destination_system_id === ''}
                    onClick={() => {
                      set(['fields'], [...form.fields, { ...newField, field: newField.field.trim() }]);
                      setNewField({ destination_system_id: newField.destination_system_id, field: '', pii: false });
                    }}>
                    Add field
                  </button>
                </div>
              </div>
            </fieldset>

            <fieldset className="gov-fieldset">
              <legend>Trigger, volume and SLA</legend>
              <div className="gov-grid">
                <Text label="Trigger" value={form.trigger} onChange={(v) => set(['trigger'], v)} />
                <Text label="Expected frequency" value={form.frequency} onChange={(v) => set(['frequency'], v)} />
                <Text label="Volume per day" type="number" min="0" value={form.volume_per_day}
                  onChange={(v) => set(['volume_per_day'], v)} />
                <Text label="Peak per minute" type="number" min="0" value={form.peak_per_minute}
                  onChange={(v) => set(['peak_per_minute'], v)} />
                <Text label="Max end-to-end latency (seconds)" type="number" min="1"
                  value={form.sla.max_latency_seconds} onChange={(v) => set(['sla', 'max_latency_seconds'], v)} />
                <Text label="Time zone" value={form.sla.business_hours.timezone}
                  onChange={(v) => set(['sla', 'business_hours', 'timezone'], v)} />
                <Text label="Business hours start" type="time" value={form.sla.business_hours.start}
                  onChange={(v) => set(['sla', 'business_hours', 'start'], v)} />
                <Text label="Business hours end" type="time" value={form.sla.business_hours.end}
                  onChange={(v) => set(['sla', 'business_hours', 'end'], v)} />
              </div>
              <div className="gov-checks" role="group" aria-label="Business days">
                {DAYS.map((d, i) => (
                  <label key={d}>
                    <input type="checkbox" checked={form.sla.business_hours.days.includes(i)}
                      onChange={() => set(['sla', 'business_hours', 'days'], toggle(form.sla.business_hours.days, i))} />
                    {d}
                  </label>
                ))}
              </div>
            </fieldset>

            <fieldset className="gov-fieldset">
              <legend>Errors and people</legend>
              <div className="gov-grid">
                <Text label="Max attempts" type="number" min="1" value={form.error_policy.max_attempts}
                  onChange={(v) => set(['error_policy', 'max_attempts'], v)} />
                <Text label="Max age (seconds)" type="number" min="1" value={form.error_policy.max_age_seconds}
                  onChange={(v) => set(['error_policy', 'max_age_seconds'], v)} />
                <Text label="Dead-letter handling" value={form.error_policy.dead_letter_handling}
                  onChange={(v) => set(['error_policy', 'dead_letter_handling'], v)} />
                <Select label="Business owner" value={form.business_owner_id} options={userOptions}
                  onChange={(v) => set(['business_owner_id'], v)} />
                <Select label="Technical owner" value={form.technical_owner_id} options={userOptions}
                  onChange={(v) => set(['technical_owner_id'], v)} />
                <Text label="On-call name" value={form.on_call.name} onChange={(v) => set(['on_call', 'name'], v)} />
                <Text label="On-call e-mail" type="email" value={form.on_call.email}
                  onChange={(v) => set(['on_call', 'email'], v)} />
                <Text label="On-call webhook (optional)" type="url" value={form.on_call.webhook_url}
                  onChange={(v) => set(['on_call', 'webhook_url'], v)} />
              </div>
            </fieldset>

            {error && (
              <div className="notice notice-error" role="alert">
                <strong>{error.detail || error.message}</strong>
                {lines.length > 0 && (
                  <ul className="gov-problems">
                    {lines.map((l) => <li key={l}>{l}</li>)}
                  </ul>
                )}
              </div>
            )}
            {saved && <p role="status" className="gov-muted">Contract saved with the draft.</p>}
            <div className="gov-actions">
              <button type="button" className="button button-ghost" onClick={onClose} disabled={busy}>Cancel</button>
              <button type="button" className="button" onClick={() => run('save')} disabled={busy}>Save contract</button>
              <button type="submit" className="button button-primary" disabled={busy}>Submit for review</button>
            </div>
          </form>
        )}
      </div>
    </div>
  );
}
