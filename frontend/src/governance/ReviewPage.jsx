// One version's review: diff against live, contract, guardrails, sample tests, dry run,
// comments, and the owner's decision (never by the author).
import { useState } from 'react';
import PageHeading from '../components/PageHeading.jsx';
import Link from '../components/Link.jsx';
import StatusBadge from '../components/StatusBadge.jsx';
import { ErrorNotice, Loading } from '../components/Notice.jsx';
import { useApi } from '../useApi.js';
import { gov } from './govApi.js';
import { ContractView, DestinationIdempotency, DryRun, Guardrails, SampleTests, SemanticDiff } from './ReviewParts.jsx';
import SubmitDialog from './SubmitDialog.jsx';
import './governance.css';

function Comments({ flowId, number, items, onAdded }) {
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function add(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await gov.addComment(flowId, number, text);
      setText('');
      onAdded();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div>
      {items.length === 0 && <p className="gov-muted">No comments yet.</p>}
      {items.map((c) => (
        <div key={c.id} className="gov-comment">
          <div className="gov-muted">{c.author?.email ?? 'deleted user'} · {new Date(c.created_at).toLocaleString()}</div>
          <div style={{ whiteSpace: 'pre-wrap' }}>{c.body}</div>
        </div>
      ))}
      <form onSubmit={add} className="gov-row" style={{ marginTop: '0.5rem' }}>
        <label className="field field-grow">
          Comment
          <textarea rows={2} value={text} onChange={(e) => setText(e.target.value)} />
        </label>
        <button type="submit" className="button" disabled={busy || !text.trim()}>Add comment</button>
      </form>
      <ErrorNotice error={error} />
    </div>
  );
}

/** Why this user cannot decide, or null when they can. */
function decisionBlock(user, version) {
  if (user.role !== 'owner') return 'Only integration owners can approve or reject.';
  const contributors = version.contributor_ids || [];
  if (version.author?.id === user.id || contributors.includes(user.id)) {
    return 'You authored or edited this version: another owner must review it.';
  }
  return null;
}

function Decision({ flowId, number, user, version, page, onDecided }) {
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [rejecting, setRejecting] = useState(false);
  if (version.status !== 'in_review') return null;
  const blocked = decisionBlock(user, version);
  async function decide(kind) {
    setBusy(true);
    setError(null);
    try {
      if (kind === 'approve') await gov.approve(flowId, number, comment);
      else await gov.reject(flowId, number, comment);
      onDecided();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  if (user.role !== 'owner') {
    return <p className="gov-muted" role="note">{blocked}</p>;
  }
  const failing = page.blocking.length > 0;
  return (
    <div>
      <label className="field">
        Decision comment {rejecting && '(required to reject)'}
        <textarea rows={2} value={comment} onChange={(e) => setComment(e.target.value)} disabled={!!blocked} />
      </label>
      <div className="gov-actions" style={{ justifyContent: 'flex-start', marginTop: '0.5rem' }}>
        <button type="button" className="button button-primary" disabled={!!blocked || busy || failing}
          title={blocked || (failing ? 'Failing guardrails block approval' : undefined)}
          onClick={() => decide('approve')}>
          Approve
        </button>
        <button type="button" className="button" disabled={!!blocked || busy}
          title={blocked || undefined}
          onClick={() => {
            setRejecting(true);
            if (comment.trim()) decide('reject');
          }}>
          Reject
        </button>
        {rejecting && !comment.trim() && <span className="gov-guard-fail">Say what to change in the comment to reject.</span>}
      </div>
      {blocked && <p className="gov-muted" role="note">{blocked}</p>}
      {!blocked && failing && <p className="gov-guard-fail" role="note">Failing guardrails block approval: fix them and resubmit.</p>}
      <ErrorNotice error={error} />
    </div>
  );
}

export default function ReviewPage({ flowId, number, user }) {
  const page = useApi((signal) => gov.review(flowId, number, { signal }), [flowId, number]);
  const refs = useApi(
    (signal) => Promise.all([gov.systems({ signal }), gov.users({ signal })]).then(([s, u]) => ({ systems: s.items, users: u.items })),
    [],
  );
  const flow = useApi((signal) => gov.flow(flowId, { signal }), [flowId]);
  const [submitOpen, setSubmitOpen] = useState(false);
  const [actionError, setActionError] = useState(null);

  if (page.loading && !page.data) return <Loading />;
  if (page.error) return <ErrorNotice error={page.error} onRetry={page.reload} />;
  const data = page.data;
  const version = data.version;
  const title = `${flow.data?.name ?? `Flow ${flowId}`} · version ${version.number}`;
  const mine = version.author?.id === user.id || (version.contributor_ids || []).includes(user.id);
  const reload = () => {
    page.reload();
    flow.reload();
  };
  return (
    <div className="gov-review">
      <PageHeading title={title}>
        <StatusBadge status={version.status} />
        {version.status === 'draft' && (
          <button type="button" className="button button-primary" onClick={() => setSubmitOpen(true)}>
            Submit for review
          </button>
        )}
        {version.status === 'in_review' && mine && (
          <button type="button" className="button" onClick={async () => {
            setActionError(null);
            try {
              await gov.withdraw(flowId, number);
              reload();
            } catch (err) {
              setActionError(err);
            }
          }}>
            Withdraw
          </button>
        )}
        <Link to="/reviews">All reviews</Link>
      </PageHeading>
      <ErrorNotice error={actionError} />
      <p className="gov-muted">
        Author {version.author?.email ?? '—'}
        {version.approved_by && ` · approved by ${version.approved_by.email}`}
        {(version.reviews || []).map((r) => ` · ${r.decision} by ${r.reviewer?.email ?? '—'}: ${r.comment || '(no comment)'}`)}
      </p>

      <section className="card gov-section" aria-labelledby="decision-h">
        <h2 id="decision-h">Decision</h2>
        {version.status === 'in_review' ? (
          <Decision flowId={flowId} number={number} user={user} version={version} page={data} onDecided={reload} />
        ) : (
          <p className="gov-muted">This version is {version.status}; nothing to decide.</p>
        )}
      </section>

      <section className="card gov-section" aria-labelledby="diff-h">
        <h2 id="diff-h">Changes</h2>
        <SemanticDiff diff={data.diff} against={data.diff_against} />
      </section>

      <section className="card gov-section" aria-labelledby="guard-h">
        <h2 id="guard-h">Guardrails {data.approvable ? '' : '(approval blocked)'}</h2>
        <Guardrails items={data.guardrails} />
        <DestinationIdempotency items={data.idempotency} />
      </section>

      <section className="card gov-section" aria-labelledby="contract-h">
        <h2 id="contract-h">Integration contract</h2>
        <ContractView contract={data.contract} diff={data.contract_diff} problems={data.contract_problems}
          systems={refs.data?.systems ?? []} users={refs.data?.users ?? []} />
      </section>

      <section className="card gov-section" aria-labelledby="tests-h">
        <h2 id="tests-h">Sample tests</h2>
        <SampleTests items={data.sample_tests} />
      </section>

      <section className="card gov-section" aria-labelledby="dry-h">
        <h2 id="dry-h">Dry run (destinations simulated)</h2>
        <DryRun runs={data.dry_run} />
      </section>

      <section className="card gov-section" aria-labelledby="comments-h">
        <h2 id="comments-h">Comments</h2>
        <Comments flowId={flowId} number={number} items={data.comments || []} onAdded={page.reload} />
      </section>

      {submitOpen && (
        <SubmitDialog flowId={flowId} version={version.number} definition={version.definition}
          onClose={() => setSubmitOpen(false)}
          onSubmitted={() => {
            setSubmitOpen(false);
            reload();
          }} />
      )}
    </div>
  );
}
