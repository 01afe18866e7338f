// The review queue: versions waiting for an owner (visible to everyone).
import { useState } from 'react';
import PageHeading from '../components/PageHeading.jsx';
import Link from '../components/Link.jsx';
import StatusBadge from '../components/StatusBadge.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { useApi } from '../useApi.js';
import { gov } from './govApi.js';
import './governance.css';

const STATUSES = [
  ['in_review', 'In review'],
  ['draft', 'Drafts'],
  ['rejected', 'Rejected'],
  ['live', 'Live'],
  ['retired', 'Retired'],
];

export default function ReviewsPage({ user }) {
  const [status, setStatus] = useState('in_review');
  const { data, error, loading, reload } = useApi((signal) => gov.reviews(status, { signal }), [status]);
  return (
    <>
      <PageHeading title="Reviews">
        <label className="field">
          Status
          <select value={status} onChange={(e) => setStatus(e.target.value)}>
            {STATUSES.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
          </select>
        </label>
      </PageHeading>
      {user.role !== 'owner' && status === 'in_review' && (
        <p className="gov-muted">Integration owners approve or reject; everyone can read reviews and comment.</p>
      )}
      {loading && !data && <Loading />}
      <ErrorNotice error={error} onRetry={reload} />
      {data && (
        <div className="card table-card">
          <table className="table">
            <thead>
              <tr><th>Flow</th><th>Version</th><th>Status</th><th>Author</th><th>Submitted</th><th><span className="visually-hidden">Open</span></th></tr>
            </thead>
            <tbody>
              {data.items.length === 0 && (
                <tr><td colSpan={6} className="gov-muted">Nothing here.</td></tr>
              )}
              {data.items.map((v) => {
                const mine = v.author?.id === user.id || (v.contributor_ids || []).includes(user.id);
                return (
                  <tr key={`${v.flow_id}-${v.number}`}>
                    <td>{v.flow_name}</td>
                    <td>v{v.number}</td>
                    <td><StatusBadge status={v.status} /></td>
                    <td>{v.author?.email ?? '—'}{mine ? ' (you)' : ''}</td>
                    <td>{v.submitted_at ? new Date(v.submitted_at).toLocaleString() : '—'}</td>
                    <td>
                      <Link to={`/reviews/${v.flow_id}/${v.number}`}>
                        {user.role === 'owner' && v.status === 'in_review' && !mine ? 'Review' : 'Open'} {v.flow_name} v{v.number}
                      </Link>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
