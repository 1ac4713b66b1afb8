// Names for the people and roles of an organization (grants, sessions, API keys name them by id).
import { all, org as orgPath } from "./api.js";
import { useLoad } from "./components/status.js";
import { useSession } from "./session.js";

/** A member as people read it: their email when the API gives it, else their user id. */
export function memberName(member, me) {
  const name = member.email ?? member.display_name ?? member.user_id;
  return me?.user?.id === member.user_id ? `${me.user.email} (you)` : name;
}

/** The organization's members and roles, loaded once per page: {members, roles, name(userId), role(roleId)}. */
export function useDirectory(orgId) {
  const me = useSession();
  const loaded = useLoad(async () => {
    const [members, roles] = await Promise.all([all(orgPath(orgId, "/members")), all(orgPath(orgId, "/roles"))]);
    return { members, roles };
  }, [orgId]);
  const members = loaded.data?.members ?? [];
  const roles = loaded.data?.roles ?? [];
  const byUser = Object.fromEntries(members.map((m) => [m.user_id, m]));
  const byRole = Object.fromEntries(roles.map((r) => [r.id, r]));
  return {
    ...loaded,
    members,
    roles,
    name: (userId) => (byUser[userId] ? memberName(byUser[userId], me) : userId),
    role: (roleId) => byRole[roleId]?.name ?? roleId,
  };
}
