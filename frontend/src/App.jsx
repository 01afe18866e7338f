import { useCallback, useEffect, useState } from 'react';
import { auth, onUnauthorized, setCsrfToken } from './api.js';
import { matchPath, navigate, useLocation } from './router.js';
import AppHeader from './components/AppHeader.jsx';
import ConnectionsPage from './components/ConnectionsPage.jsx';
import DeadLettersPage from './components/DeadLettersPage.jsx';
import FlowsPage from './components/FlowsPage.jsx';
import LoginPage from './components/LoginPage.jsx';
import NotFoundPage from './components/NotFoundPage.jsx';
import { ErrorNotice, Loading } from './components/Notice.jsx';
import RunDetailPage from './components/RunDetailPage.jsx';
import RunsPage from './components/RunsPage.jsx';

const HOME = '/flows';

// Only same-app paths are accepted as a place to return to after sign-in.
function safeNext(value) {
  return value && value.startsWith('/') && !value.startsWith('//') && !value.startsWith('/login') ? value : HOME;
}

function Page({ path, query, user }) {
  if (path === '/' || path === '/login') return <Loading />; // redirecting
  if (path === '/flows') return <FlowsPage />;
  if (path === '/runs') return <RunsPage query={query} />;
  if (path === '/dead-letters') return <DeadLettersPage query={query} user={user} />;
  if (path === '/connections') return <ConnectionsPage />;
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
      <main id="main" className="app-main">
        <Page path={path} query={query} user={session.user} />
      </main>
    </>
  );
}
