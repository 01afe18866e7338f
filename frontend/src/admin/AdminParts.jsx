// Shared parts of the admin pages: the tabs, and the refusal shown to other roles.
import Link from '../components/Link.jsx';
import PageHeading from '../components/PageHeading.jsx';

const TABS = [
  { to: '/admin', label: 'Users' },
  { to: '/admin/settings', label: 'Settings' },
  { to: '/admin/outbox', label: 'Outbox' },
];

export function AdminTabs({ path }) {
  return (
    <nav aria-label="Admin" className="admin-tabs">
      <ul>
        {TABS.map((tab) => (
          <li key={tab.to}>
            <Link to={tab.to} aria-current={path === tab.to ? 'page' : undefined}>
              {tab.label}
            </Link>
          </li>
        ))}
      </ul>
    </nav>
  );
}

export function isAdmin(user) {
  return user?.role === 'admin';
}

export function NotAllowed({ title }) {
  return (
    <>
      <PageHeading title={title} />
      <p className="notice" role="alert">
        You are not allowed to see this page: users, settings and the outbox are managed by admins.
      </p>
    </>
  );
}
