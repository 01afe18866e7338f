// Users and roles (admins): list, change a role, deactivate/reactivate, create a user.
import { useEffect, useState } from 'react';
import PageHeading from '../components/PageHeading.jsx';
import { ErrorNotice, Loading, problemErrors } from '../components/Notice.jsx';
import { useApi } from '../useApi.js';
import { AdminTabs, NotAllowed, isAdmin } from './AdminParts.jsx';
import { ROLES, adminApi } from './adminApi.js';
import './admin.css';

const MIN_PASSWORD = 12;
const EMPTY = { email: '', name: '', role: 'analyst', password: '' };

function errorText(err) {
  const lines = problemErrors(err);
  return lines.length ? `${err.message} (${lines.join('; ')})` : err.message;
}

function CreateUserForm({ onCreated }) {
  const [form, setForm] = useState(EMPTY);
  const [error, setError] = useState(null);
  const [saving, setSaving] = useState(false);
  const fieldErrors = error?.body?.errors?.json || {};
  const set = (key) => (e) => setForm((f) => ({ ...f, [key]: e.target.value }));

  async function submit(event) {
    event.preventDefault();
    setSaving(true);
    setError(null);
    try {
      const user = await adminApi.createUser(form);
      setForm(EMPTY);
      onCreated(user);
    } catch (err) {
      setError(err);
    } finally {
      setSaving(false);
    }
  }

  const invalid = (key) => (fieldErrors[key] ? true : undefined);
  return (
    <form className="card admin-create" aria-labelledby="admin-create-title" onSubmit={submit}>
      <h2 id="admin-create-title">Create a user</h2>
      <div className="admin-create-row">
        <label className="field">
          Email
          <input type="email" required autoComplete="off" value={form.email} onChange={set('email')} aria-invalid={invalid('email')} />
        </label>
        <label className="field">
          Name
          <input value={form.name} onChange={set('name')} autoComplete="off" aria-invalid={invalid('name')} />
        </label>
        <label className="field">
          Role
          <select value={form.role} onChange={set('role')} aria-invalid={invalid('role')}>
            {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
          </select>
        </label>
        <label className="field">
          Initial password
          <input
            type="password"
            required
            autoComplete="new-password"
            value={form.password}
            onChange={set('password')}
            aria-invalid={invalid('password')}
            aria-describedby="admin-password-hint"
          />
          <span id="admin-password-hint" className="field-hint">At least {MIN_PASSWORD} characters.</span>
        </label>
        <button type="submit" className="button button-primary" disabled={saving}>
          {saving ? 'Creating…' : 'Create user'}
        </button>
      </div>
      <ErrorNotice error={error} lead="The user was not created." />
    </form>
  );
}

function UserRow({ row, self, onChanged }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const reasonId = `admin-self-${row.id}`;

  async function change(body) {
    setBusy(true);
    setError(null);
    try {
      onChanged(await adminApi.updateUser(row.id, body), body);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <tr className={row.active ? undefined : 'is-inactive'}>
      <td>{row.email}</td>
      <td>{row.name || <span className="muted">—</span>}</td>
      <td>
        <select
          aria-label={`Role of ${row.email}`}
          value={row.role}
          disabled={self || busy}
          aria-describedby={self ? reasonId : undefined}
          onChange={(e) => change({ role: e.target.value })}
        >
          {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
        </select>
        {self && (
          <span id={reasonId} className="admin-reason">
            You cannot change your own role or deactivate yourself.
          </span>
        )}
      </td>
      <td>
        <span className={row.active ? 'admin-state' : 'admin-state is-off'}>{row.active ? 'Active' : 'Deactivated'}</span>
      </td>
      <td>
        <button
          type="button"
          className="button button-small"
          disabled={self || busy}
          aria-describedby={self ? reasonId : undefined}
          onClick={() => change({ active: !row.active })}
        >
          {row.active ? 'Deactivate' : 'Reactivate'}
          <span className="visually-hidden"> {row.email}</span>
        </button>
        {error && (
          <span className="admin-row-error" role="alert">
            {errorText(error)}
          </span>
        )}
      </td>
    </tr>
  );
}

export default function UsersPage({ user, path }) {
  const allowed = isAdmin(user);
  const { data, error, loading, reload } = useApi(
    (signal) => (allowed ? adminApi.users({ signal }) : Promise.resolve(null)),
    [allowed],
  );
  const [rows, setRows] = useState(null);
  const [status, setStatus] = useState('');
  useEffect(() => {
    if (data) setRows(data.items);
  }, [data]);

  if (!allowed) return <NotAllowed title="Users" />;

  function replace(updated, body) {
    setRows((list) => list.map((u) => (u.id === updated.id ? updated : u)));
    if (body.role) setStatus(`${updated.email} is now ${updated.role}.`);
    else setStatus(`${updated.email} is ${updated.active ? 'active again' : 'deactivated'}.`);
  }

  return (
    <>
      <PageHeading title="Users" />
      <AdminTabs path={path} />
      <CreateUserForm
        onCreated={(created) => {
          setRows((list) => [...(list || []), created].sort((a, b) => a.email.localeCompare(b.email)));
          setStatus(`${created.email} was created as ${created.role}.`);
        }}
      />
      <p role="status" className="muted">{status}</p>
      {loading && !rows && <Loading />}
      <ErrorNotice error={error} onRetry={reload} />
      {rows && (
        <div className="card table-card admin-users">
          <table className="table" aria-label="Users">
            <thead>
              <tr><th>Email</th><th>Name</th><th>Role</th><th>State</th><th>Actions</th></tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <UserRow key={row.id} row={row} self={row.id === user.id} onChanged={replace} />
              ))}
            </tbody>
          </table>
          <p className="table-footer">{rows.length} user(s).</p>
        </div>
      )}
    </>
  );
}
