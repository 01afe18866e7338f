import { useId, useState } from 'react';
import { flows } from '../api.js';
import { navigate } from '../router.js';
import Link from './Link.jsx';
import { ErrorNotice } from './Notice.jsx';
import PageHeading from './PageHeading.jsx';
import './flows.css';

/** /flows/new: name the flow, then build it on the canvas. */
export default function NewFlowPage() {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const nameId = useId();
  const descId = useId();

  async function create(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const flow = await flows.create({ name: name.trim(), description });
      navigate(`/flows/${flow.id}/edit`, { replace: true });
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <>
      <p className="breadcrumb"><Link to="/flows">← Flows</Link></p>
      <PageHeading title="New flow" />
      <form className="card new-flow-form" onSubmit={create}>
        <p className="muted">Give the flow a name people will recognise, e.g. “Web orders → OMS”. You build its steps on the canvas next.</p>
        <ErrorNotice error={error} />
        <label className="field" htmlFor={nameId}>
          <span>Name</span>
        </label>
        <input id={nameId} className="input" required maxLength={200} value={name} autoFocus
          onChange={(e) => setName(e.target.value)} />
        <label className="field" htmlFor={descId}>
          <span>Description (optional)</span>
        </label>
        <textarea id={descId} className="input" rows={3} maxLength={5000} value={description}
          onChange={(e) => setDescription(e.target.value)} />
        <div className="form-actions">
          <button type="submit" className="button button-primary" disabled={busy || !name.trim()}>
            {busy ? 'Creating…' : 'Create and open the editor'}
          </button>
          <Link to="/flows" className="button button-ghost">Cancel</Link>
        </div>
      </form>
    </>
  );
}
