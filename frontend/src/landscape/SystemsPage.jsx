import { useState } from 'react';
import { useApi } from '../useApi.js';
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { CRITICALITIES, SYSTEM_KINDS, kindLabel, systems, users } from './api.js';
import './landscape.css';

const EMPTY = { name: '', kind: 'commerce', criticality: 'medium', owner_id: '', notes: '' };

function SystemForm({ initial, people, onSaved, onCancel }) {
  const [form, setForm] = useState(
    initial
      ? { ...initial, owner_id: initial.owner?.id ?? '' }
      : EMPTY,
  );
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const set = (key) => (event) => setForm({ ...form, [key]: event.target.value });

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      name: form.name,
      kind: form.kind,
      criticality: form.criticality,
      owner_id: form.owner_id === '' ? null : Number(form.owner_id),
      notes: form.notes,
    };
    try {
      const saved = initial ? await systems.update(initial.id, body) : await systems.create(body);
      onSaved(saved);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  const title = initial ? `Edit ${initial.name}` : 'Add a system';
  return (
    <form className="card system-form" onSubmit={submit} aria-label={title}>
      <h2>{title}</h2>
      <ErrorNotice error={error} />
      <div className="system-form-grid">
        <label className="field">
          Name
          <input value={form.name} onChange={set('name')} required maxLength={200} />
        </label>
        <label className="field">
          Kind
          <select value={form.kind} onChange={set('kind')}>
            {SYSTEM_KINDS.map(([value, label]) => (
              <option key={value} value={value}>{label}</option>
            ))}
          </select>
        </label>
        <label className="field">
          Criticality
          <select value={form.criticality} onChange={set('criticality')}>
            {CRITICALITIES.map((c) => <option key={c} value={c}>{c}</option>)}
          </select>
        </label>
        <label className="field">
          Owner
          <select value={form.owner_id} onChange={set('owner_id')}>
            <option value="">— nobody —</option>
            {people.map((u) => <option key={u.id} value={u.id}>{u.email}</option>)}
          </select>
        </label>
        <label className="field system-notes">
          Notes
          <textarea value={form.notes} onChange={set('notes')} rows={3} />
        </label>
      </div>
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? 'Saving…' : initial ? 'Save changes' : 'Add system'}
        </button>
        <button type="button" className="button" onClick={onCancel} disabled={busy}>Cancel</button>
      </div>
    </form>
  );
}

function DeleteButton({ system, onDeleted }) {
  const [state, setState] = useState({ confirming: false, busy: false, error: null });
  async function remove() {
    setState({ confirming: true, busy: true, error: null });
    try {
      await systems.remove(system.id);
      onDeleted();
    } catch (error) {
      setState({ confirming: false, busy: false, error });
    }
  }
  const refs = state.error?.body;
  return (
    <span className="delete-cell">
      {state.confirming ? (
        <span role="group" aria-label={`Confirm deleting ${system.name}`}>
          <span className="small">Delete {system.name}? </span>
          <button type="button" className="button button-small button-danger" onClick={remove} disabled={state.busy}>
            Yes, delete
          </button>{' '}
          <button type="button" className="button button-small" onClick={() => setState({ confirming: false })}>
            Keep
          </button>
        </span>
      ) : (
        <button type="button" className="button button-small" aria-label={`Delete ${system.name}`}
          onClick={() => setState({ confirming: true, busy: false, error: null })}>
          Delete
        </button>
      )}
      {state.error && (
        <span className="text-error small" role="alert">
          {' '}{state.error.detail || state.error.message}
          {refs?.connections?.length > 0 && <> Connections: {refs.connections.join(', ')}.</>}
          {refs?.contracts?.length > 0 && <> Contracts: {refs.contracts.join(', ')}.</>}
        </span>
      )}
    </span>
  );
}

export default function SystemsPage({ user }) {
  const { data, error, loading, reload } = useApi((signal) => systems.list({ signal }), []);
  const people = useApi((signal) => users.list({ signal }).catch(() => ({ items: [] })), []);
  const [editing, setEditing] = useState(null); // null | 'new' | system
  const canManage = user && (user.role === 'owner' || user.role === 'admin');
  const items = data?.items ?? [];

  function saved() {
    setEditing(null);
    reload();
  }

  return (
    <>
      <PageHeading title="Systems">
        {canManage && editing === null && (
          <button type="button" className="button button-primary" onClick={() => setEditing('new')}>
            Add system
          </button>
        )}
      </PageHeading>
      <p className="muted page-intro">
        The applications of your landscape. Connections point at them, contracts name them, and the map draws them.
        {!canManage && ' Owners and admins can change this list.'}
      </p>
      {editing !== null && (
        <SystemForm
          key={editing === 'new' ? 'new' : editing.id}
          initial={editing === 'new' ? null : editing}
          people={people.data?.items ?? []}
          onSaved={saved}
          onCancel={() => setEditing(null)}
        />
      )}
      <ErrorNotice error={error} onRetry={reload} />
      {loading && !data && <Loading>Loading systems…</Loading>}
      {data && (
        <div className="card table-card">
          <table className="table" aria-label="Systems">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Criticality</th>
                <th scope="col">Owner</th>
                <th scope="col">Notes</th>
                {canManage && <th scope="col"><span className="visually-hidden">Actions</span></th>}
              </tr>
            </thead>
            <tbody>
              {items.length === 0 && (
                <tr><td colSpan={6} className="muted">No systems yet.</td></tr>
              )}
              {items.map((s) => (
                <tr key={s.id}>
                  <td><strong>{s.name}</strong></td>
                  <td>{kindLabel(s.kind)}</td>
                  <td><span className={`badge criticality-${s.criticality}`}>{s.criticality}</span></td>
                  <td>{s.owner?.email ?? <span className="muted">—</span>}</td>
                  <td className="system-notes-cell">{s.notes || <span className="muted">—</span>}</td>
                  {canManage && (
                    <td className="actions-cell">
                      <button type="button" className="button button-small" aria-label={`Edit ${s.name}`}
                        onClick={() => setEditing(s)}>
                        Edit
                      </button>{' '}
                      <DeleteButton system={s} onDeleted={reload} />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
