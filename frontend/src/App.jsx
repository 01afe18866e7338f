import { Suspense, lazy, useCallback, useEffect, useState } from 'react';
import { auth, onUnauthorized, setCsrfToken } from './api.js';
import { matchPath, navigate, useLocation } from './router.js';
import AppHeader from './components/AppHeader.jsx';
import ConnectionsPage from './components/ConnectionsPage.jsx';
import DeadLettersPage from './components/DeadLettersPage.jsx';
import FlowsPage from './components/FlowsPage.jsx';
import LoginPage from './components/LoginPage.jsx';
import NewFlowPage from './components/NewFlowPage.jsx';
import NotFoundPage from './components/NotFoundPage.jsx';
import { ErrorNotice, Loading } from './components/Notice.jsx';
import RunDetailPage from './components/RunDetailPage.jsx';
import RunsPage from './components/RunsPage.jsx';
import DashboardPage from './dashboard/DashboardPage.jsx';
import SystemsPage from './landscape/SystemsPage.jsx';
import AlertDetailPage from './alerts/AlertDetailPage.jsx';
import AlertsPage from './alerts/AlertsPage.jsx';
import ReconciliationPage from './alerts/ReconciliationPage.jsx';
import AuditPage from './governance/AuditPage.jsx';
import OutboxPage from './admin/OutboxPage.jsx';
import SettingsPage from './admin/SettingsPage.jsx';
import UsersPage from './admin/UsersPage.jsx';
import ReviewPage from './governance/ReviewPage.jsx';
import ReviewsPage from './governance/ReviewsPage.jsx';
import FlowPage from './flows/FlowPage.jsx';

const HOME = '/flows';

// The editor (React Flow, CodeMirror) is its own chunk, loaded only when a flow is opened.
const EditorPage = lazy(() => import('./editor/EditorPage.jsx'));
const MapPage = lazy(() => import('./landscape/MapPage.jsx'));

// Only same-app paths are accepted as a place to return to after sign-in.
function safeNext(value) {
  return value && value.startsWith('/') && !value.startsWith('//') && !value.startsWith('/login') ? value : HOME;
}

function Page({ path, query, user }) {
  if (path === '/' || path === '/login') return <Loading />; // redirecting
  if (path === '/flows') return <FlowsPage query={query} user={user} />;
  if (path === '/flows/new') return <NewFlowPage />;
  const edit = matchPath('/flows/:id/edit', path);
  if (edit) {
    return (
      <Suspense fallback={<Loading>Loading the editor…</Loading>}>
        <EditorPage key={edit.id} flowId={edit.id} user={user} />
      </Suspense>
    );
  }
  const flowPage = matchPath('/flows/:id', path);
  if (flowPage && /^\d+$/.test(flowPage.id)) return <FlowPage key={flowPage.id} flowId={flowPage.id} user={user} />;
  if (path === '/runs') return <RunsPage query={query} />;
  if (path === '/dead-letters') return <DeadLettersPage query={query} user={user} />;
  if (path === '/connections') return <ConnectionsPage />;
  if (path === '/dashboard') return <DashboardPage />;
  if (path === '/systems') return <SystemsPage user={user} />;
  if (path === '/map') {
    return (
      <Suspense fallback={<Loading>Loading the map…</Loading>}>
        <MapPage />
      </Suspense>
    );
  }
  if (path === '/alerts') return <AlertsPage query={query} user={user} />;
  const alert = matchPath('/alerts/:id', path);
  if (alert) return <AlertDetailPage key={alert.id} id={alert.id} user={user} />;
  if (path === '/reconciliation') return <ReconciliationPage query={query} user={user} />;
  if (path === '/reviews') return <ReviewsPage user={user} />;
  const review = matchPath('/reviews/:flowId/:number', path);
  if (review) return <ReviewPage key={path} flowId={review.flowId} number={review.number} user={user} />;
  if (path === '/audit') return <AuditPage user={user} />;
  if (path === '/admin') return <UsersPage user={user} path={path} />;
  if (path === '/admin/settings') return <SettingsPage user={user} path={path} />;
  if (path === '/admin/outbox') return <OutboxPage user={user} path={path} />;
  const run = matchPath('/runs/:id', path);
  if (run) return <RunDetailPage key={run.id} id={run.id} />;
  return <NotFoundPage />;
}

export default function App() {
  const { path, search, query } = useLocation();
  // session: undefined while checking, null when signed out, else { user, csrf_token }
  const [session, setSession] = useState(undefined);
  const [bootError, setBootError] = useState(null);
  const [signingOut, setSigningOut] = useState(false);

  const signedOut = useCallback(() => {
    setCsrfToken(null);
    setSession(null);
  }, []);

  const checkSession = useCallback(() => {
    setBootError(null);
    auth.me().then(
      (s) => {
        setCsrfToken(s.csrf_token);
        setSession(s);
      },
      (err) => {
        if (err.status === 401) signedOut();
        else setBootError(err);
      },
    );
  }, [signedOut]);

  useEffect(() => {
    checkSession();
    onUnauthorized(signedOut); // session expired while using the app
    return () => onUnauthorized(null);
  }, [checkSession, signedOut]);

  // Keep the URL in step with the session: /login when signed out, never /login when signed in.
  useEffect(() => {
    if (session === null && path !== '/login') {
      const here = path + search;
      navigate(here === '/' ? '/login' : `/login?next=${encodeURIComponent(here)}`, { replace: true });
    } else if (session && (path === '/login' || path === '/')) {
      navigate(safeNext(path === '/login' ? query.get('next') : null), { replace: true });
    }
  }, [session, path, search, query]);

  async function signOut() {
    setSigningOut(true);
    try {
      await auth.logout();
    } catch {
      /* the session is dropped locally either way */
    }
    setSigningOut(false);
    signedOut();
    navigate('/login', { replace: true });
  }

  if (bootError) {
    return (
      <main className="boot-screen">
        <ErrorNotice error={bootError} onRetry={checkSession} />
      </main>
    );
  }
  if (session === undefined) {
    return (
      <main className="boot-screen">
        <Loading />
      </main>
    );
  }
  if (session === null) {
    return (
      <LoginPage
        onSignedIn={(s) => {
          setCsrfToken(s.csrf_token);
          setSession(s);
        }}
      />
    );
  }

  return (
    <>
      <a className="skip-link" href="#main">Skip to content</a>
      <AppHeader path={path} user={session.user} onSignOut={signOut} signingOut={signingOut} />
      <main id="main" className={matchPath('/flows/:id/edit', path) ? 'app-main app-main-editor' : 'app-main'}>
        <Page path={path} query={query} user={session.user} />
      </main>
    </>
  );
}
