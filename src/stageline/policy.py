"""stageline.yaml → Policy: the organization, its members and their roles."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stageline import sshkeys, yamlsafe
from stageline.errors import RepositoryError
from stageline.layout import POLICY_FILE
from stageline.sshkeys import PublicKey

if TYPE_CHECKING:
    from stageline.windows import Window

ROLES = ("developer", "qa", "org-admin")
MEMBER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# No pattern characters either: git's allowed-signers file (keys allowed-signers) reads
# "*", "?", "!" and "," in a principal as a pattern list.
EMAIL_RE = re.compile(r'^[^@\s<>*?!,"]+@[^@\s<>*?!,"]+$')
DEFAULT_IDENTITY_ENV = (
    "GL_USERNAME", "GITEA_PUSHER_NAME", "GITHUB_USER_LOGIN", "BB_USER_NAME", "GL_USER",
    "REMOTE_USER",
)


# A service account is the login a CI system pushes with: a member-like id, or a GitHub
# App's "<slug>[bot]" login.
SERVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[bot\])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PolicyError(RepositoryError):
    """stageline.yaml is missing or invalid (exit 5)."""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    email: str
    roles: frozenset[str]
    keys: tuple[PublicKey, ...] = ()  # signing keys (signing, §8)

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class ServiceAccount:
    """A pusher that is not a member: a CI system's account.

    With ``acts_for_members`` it may push commits whose author is a member, and
    each commit is then judged by its author's roles alone (see enforcement.md).
    """

    id: str
    acts_for_members: bool = False
    keys: tuple[PublicKey, ...] = ()


SIGNING_LEVELS = ("none", "actions", "all")


@dataclass(frozen=True)
class Signing:
    """``signing: {require, revoked}``: which commits must be signed, and keys never
    to trust again (by fingerprint)."""

    require: str = "none"
    revoked: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    organization: str
    protected_branches: tuple[str, ...]
    members: dict[str, Member]
    separation_of_duties: bool = True
    identity_env: tuple[str, ...] = DEFAULT_IDENTITY_ENV
    ci_actor_env: tuple[str, ...] = ()  # empty: the CLI takes no actor from CI variables
    service_accounts: Mapping[str, ServiceAccount] = field(default_factory=dict)
    approvals_required: int = 1  # promotion.production.approvals.required
    # promotion.<target>.windows, read: the windows that gate pushes to each target
    windows: Mapping[str, tuple[Window, ...]] = field(default_factory=dict)
    signing: Signing = Signing()

    def member(self, member_id: str) -> Member | None:
        return self.members.get(member_id)

    def pushes_for_members(self, pusher_id: str) -> bool:
        """True when ``pusher_id`` is a service account trusted to push members' commits."""
        account = self.service_accounts.get(pusher_id)
        return account is not None and account.acts_for_members

    def member_by_email(self, email: str) -> Member | None:
        return self._by_email.get(email.strip().lower())

    @functools.cached_property
    def _by_email(self) -> dict[str, Member]:
        """Members by lowercased email (made once: the hook and the log ask for every
        commit, and an organization may have hundreds of members)."""
        found: dict[str, Member] = {}
        for member in self.members.values():
            found.setdefault(member.email.lower(), member)
        return found

    def key_owner(self, blob: bytes) -> str | None:
        """The member or service account whose listed key this is (a key is listed once)."""
        return self._key_owners.get(blob)

    @functools.cached_property
    def _key_owners(self) -> dict[bytes, str]:
        holders: list[Member | ServiceAccount] = [*self.members.values(),
                                                  *self.service_accounts.values()]
        return {key.blob: holder.id for holder in holders for key in holder.keys}

    def is_protected(self, ref: str) -> bool:
        name = ref.removeprefix("refs/heads/").lower()
        return ref.startswith("refs/heads/") and any(
            name == b.lower() for b in self.protected_branches
        )


# What ``git check-ref-format --branch`` refuses (git-check-ref-format(1)): control
# characters, space, DEL, ~ ^ : ? * [ and backslash; "..", "//" and "@{"; a leading "-"
# or "/"; a trailing "/" or "."; a component that starts with "." or ends with ".lock".
_NOT_A_BRANCH_RE = re.compile(
    r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{|\A[-/]|[/.]\Z|(\A|/)\.|\.lock(/|\Z)")


def is_branch_name(name: str) -> bool:
    """Whether ``name`` is a branch name git accepts, by the rules of
    ``git check-ref-format --branch`` (no git process): not empty, not ``HEAD``, UTF-8
    text without what ``_NOT_A_BRANCH_RE`` matches. Stageline also refuses names that
    start with ``refs/``: ``refs/tags/v1`` is another kind of ref, not a branch."""
    if not name or name == "HEAD" or name.startswith("refs/") or _NOT_A_BRANCH_RE.search(name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no ref name git reports can equal it
        return False
    return True


KEYS = ("organization", "protected_branches", "members", "separation_of_duties", "identity",
        "ci", "service_accounts", "promotion", "windows", "signing")
MEMBER_KEYS = ("name", "email", "roles", "keys")
# Variables a pushing client can set or choose, which must never name the pusher: git's
# own, the request headers and query a web server hands to git http-backend (CGI), and
# what an SSH client sends (its command, its locale and terminal).
CLIENT_SET = re.compile(r"GIT_|(?:REDIRECT_)+HTTP_|HTTP_|CONTENT_|REQUEST_|QUERY_STRING$|PATH_INFO$|"
                        r"PATH_TRANSLATED$|SSH_ORIGINAL_COMMAND$|LANG|LC_|TERM|TZ$", re.I)


def parse_policy(data: bytes, source: str = POLICY_FILE) -> Policy:
    """Parse and validate a policy; any problem is one sentence and exit 5."""
    try:
        doc = yamlsafe.load(data, source)
    except yamlsafe.YamlError as exc:
        raise PolicyError(str(exc)) from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{source} must be a mapping with organization and members.")
    for key in doc:
        if key not in KEYS:
            raise PolicyError(f"{source}: unknown key {yamlsafe.show(key)}; the keys are "
                              f"{', '.join(KEYS)}.")
    organization = doc.get("organization")
    if not isinstance(organization, str) or not organization.strip():
        raise PolicyError(f"{source}: organization must be a non-empty name.")
    branches = doc.get("protected_branches", ["main"])
    if (not isinstance(branches, list) or not branches
            or not all(isinstance(b, str) and b.strip() for b in branches)):
        raise PolicyError(f"{source}: protected_branches must be a non-empty list of branch names.")
    # "refs/heads/main" means main; a pattern or another kind of ref would protect nothing.
    branches = [b.strip().removeprefix("refs/heads/") for b in branches]
    for branch in branches:
        if not is_branch_name(branch):
            raise PolicyError(f"{source}: {yamlsafe.show(branch)} is not a branch name; list "
                              "branches by name, such as main.")
    members = _members(doc.get("members"), source)
    accounts = _service_accounts(doc.get("service_accounts"), members, source)
    signing = _signing(doc.get("signing"), source)
    _keys_listed_once([*members.values(), *accounts.values()], source)
    separation = doc.get("separation_of_duties", True)
    if not isinstance(separation, bool):
        raise PolicyError(f"{source}: separation_of_duties must be true or false.")
    identity_env: tuple[str, ...] = DEFAULT_IDENTITY_ENV
    identity = doc.get("identity")
    if identity is not None:
        if isinstance(identity, dict):
            _only_key(identity, "env", "identity", source)
        env_list = identity.get("env") if isinstance(identity, dict) else None
        identity_env = _env_names(env_list, "identity.env", source,
                                  "the pushing client can set it")
    required = _approvals_required(doc.get("promotion"), source)
    qa = sum(1 for m in members.values() if m.has("qa"))
    if required > max(qa, 1):
        raise PolicyError(f"{source}: promotion.production.approvals.required is {required}, "
                          f"more than the {qa} members who hold qa; no tree could go to "
                          "production.")
    return Policy(organization.strip(), tuple(b.strip() for b in branches), members, separation,
                  identity_env, ci_actor_env=_ci_actor_env(doc.get("ci"), source),
                  service_accounts=accounts, approvals_required=required,
                  windows=_windows(doc.get("promotion"), doc.get("windows"), source),
                  signing=signing)


def _signing(raw: Any, source: str) -> Signing:
    """``signing: {require: none | actions | all, revoked: [SHA256:…]}``."""
    if raw is None:
        return Signing()
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: signing must be a mapping, such as {{require: actions}}.")
    unknown = sorted(str(k) for k in raw if k not in ("require", "revoked"))
    if unknown:
        raise PolicyError(f"{source}: signing has unknown key {yamlsafe.show(unknown[0])}; the "
                          "keys are require and revoked.")
    require = raw.get("require", "none")
    if require not in SIGNING_LEVELS:
        raise PolicyError(f"{source}: signing.require is {yamlsafe.show(require)}; it is one of "
                          f"{', '.join(SIGNING_LEVELS)}.")
    revoked = raw.get("revoked", [])
    if not isinstance(revoked, list) or not all(
            isinstance(f, str) and sshkeys.FINGERPRINT_RE.fullmatch(f) for f in revoked):
        raise PolicyError(f"{source}: signing.revoked must list key fingerprints as "
                          "'ssh-keygen -l' prints them (SHA256:…).")
    return Signing(require, frozenset(revoked))


def _keys(raw: Any, who: str, source: str) -> tuple[PublicKey, ...]:
    """A member's or service account's ``keys``: OpenSSH public keys, one per line."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError(f"{source}: {who}: keys must be a list of OpenSSH public keys, such "
                          "as the line of ~/.ssh/id_ed25519.pub.")
    keys = []
    for i, line in enumerate(raw, 1):
        try:
            keys.append(sshkeys.parse_key(line))
        except sshkeys.SignatureError as exc:
            raise PolicyError(f"{source}: {who}: key {i} is not an OpenSSH public key: "
                              f"{exc}.") from None
    return tuple(keys)


def _keys_listed_once(holders: Sequence[Member | ServiceAccount], source: str) -> None:
    """A key is one person's: listed twice, a signature would not say who made it."""
    seen: dict[bytes, str] = {}
    for holder in holders:
        for key in holder.keys:
            if key.blob in seen:
                same = "twice" if seen[key.blob] == holder.id else \
                    f"under both {seen[key.blob]} and {holder.id}"
                raise PolicyError(f"{source}: the key {key.fingerprint} is listed {same}; a "
                                  "key belongs to one member.")
            seen[key.blob] = holder.id


def _windows(promotion: Any, raw: Any, source: str) -> dict[str, tuple[Window, ...]]:
    """``windows: {name: {kind, cron, duration, timezone}}``, and for each target the
    windows ``promotion.<target>.windows`` names (a name no window has is an error)."""
    if raw is None and not any(isinstance(spec, dict) and spec.get("windows")
                               for spec in (promotion or {}).values()):
        return {}
    from stageline import windows as w  # zoneinfo and the cron parser, only when used

    named: dict[str, Window] = {}
    if raw is not None and not isinstance(raw, dict):
        raise PolicyError(f"{source}: windows must map names to {{kind, cron, duration, "
                          "timezone}.")
    for name, spec in (raw or {}).items():
        where = f"{source}: windows.{yamlsafe.show(name)}"
        if not isinstance(name, str) or not MEMBER_ID_RE.fullmatch(name):
            raise PolicyError(f"{where}: a window's name is letters, digits, '.', '_' and '-'.")
        if not isinstance(spec, dict) or set(spec) != {"kind", "cron", "duration", "timezone"}:
            raise PolicyError(f"{where} must have exactly kind, cron, duration and timezone.")
        if spec["kind"] not in ("allow", "deny"):
            raise PolicyError(f"{where}: kind must be allow or deny.")
        if not isinstance(spec["timezone"], str) or not w.zone_exists(spec["timezone"]):
            raise PolicyError(f"{where}: timezone {yamlsafe.show(spec['timezone'])} is not an "
                              "IANA time zone such as Europe/Berlin.")
        try:
            named[name] = w.Window(name, spec["kind"], w.parse_cron(spec["cron"]),
                                   w.parse_duration(spec["duration"]), spec["timezone"])
        except w.WindowError as exc:
            raise PolicyError(f"{where}: {exc}.") from None
    gated: dict[str, tuple[Window, ...]] = {}
    for target, spec in (promotion or {}).items() if isinstance(promotion, dict) else ():
        listed = spec.get("windows") if isinstance(spec, dict) else None
        if listed is None:
            continue
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            raise PolicyError(f"{source}: promotion.{target}.windows must be a list of window "
                              "names.")
        unknown = [n for n in listed if n not in named]
        if unknown:
            raise PolicyError(f"{source}: promotion.{target}.windows names "
                              f"{yamlsafe.show(unknown[0])}, which windows does not define.")
        gated[target] = tuple(named[n] for n in listed)
    return gated


def _approvals_required(raw: Any, source: str) -> int:
    """``promotion: {production: {approvals: {required: N}}}`` (default 1)."""
    if raw is None:
        return 1
    shape = "promotion must be {production: {approvals: {required: N}}}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: {shape}.")
    for target, spec in raw.items():
        if target not in ("staging", "production") or not isinstance(spec, dict):
            raise PolicyError(f"{source}: {shape}.")
        for key in spec:
            if key != "windows" and (key != "approvals" or target != "production"):
                raise PolicyError(f"{source}: promotion.{target} has unknown key "
                                  f"{yamlsafe.show(key)}.")
    approvals = raw.get("production", {}).get("approvals")
    if approvals is None:
        return 1
    required = approvals.get("required") if isinstance(approvals, dict) else None
    if not isinstance(approvals, dict) or set(approvals) != {"required"} or \
            not isinstance(required, int) or isinstance(required, bool) or \
            not 1 <= required <= 100:
        raise PolicyError(f"{source}: promotion.production.approvals must be {{required: N}} "
                          "with N from 1 to 100.")
    return required


def first_set(names: Sequence[str], env: Mapping[str, str]) -> tuple[str, str] | None:
    """The first of ``names`` set (non-blank) in ``env``, with its value."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _ci_actor_env(raw: Any, source: str) -> tuple[str, ...]:
    """``ci: {actor_env: [...]}``: the CI variables the CLI may take its actor from."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: ci must be a mapping, such as "
                          "{actor_env: [GITHUB_ACTOR]}.")
    _only_key(raw, "actor_env", "ci", source)
    if "actor_env" not in raw:
        return ()
    return _env_names(raw["actor_env"], "ci.actor_env", source,
                      "GIT_* variables are git's own, not the CI system's")


def _only_key(mapping: dict[Any, Any], key: str, where: str, source: str) -> None:
    """Refuse any key of ``mapping`` but ``key``: a misspelt setting is an error, not a no-op."""
    unknown = sorted(str(k) for k in mapping if k != key)
    if unknown:
        raise PolicyError(f"{source}: {where} has unknown key {yamlsafe.show(unknown[0])}; the "
                          f"only key is {key}.")


def _env_names(names: Any, key: str, source: str, why_not_git: str) -> tuple[str, ...]:
    """A non-empty list of environment variable names, none of them git's own ``GIT_*``."""
    if (not isinstance(names, list) or not names
            or not all(isinstance(v, str) and ENV_NAME_RE.fullmatch(v) for v in names)):
        raise PolicyError(f"{source}: {key} must be a non-empty list of variable names.")
    client_set = [v for v in names if CLIENT_SET.match(v)]
    if client_set:
        raise PolicyError(f"{source}: {key} may not name {client_set[0]}: {why_not_git}.")
    return tuple(names)


def _service_accounts(raw: Any, members: dict[str, Member], source: str) \
        -> dict[str, ServiceAccount]:
    """``service_accounts: {ci-bot: {acts_for_members: true}}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: service_accounts must map account ids to settings, such "
                          "as {ci-bot: {acts_for_members: true}}.")
    folded = {m.casefold(): m for m in members}
    accounts: dict[str, ServiceAccount] = {}
    for account_id, spec in raw.items():
        if not isinstance(account_id, str) or not SERVICE_ID_RE.fullmatch(account_id):
            raise PolicyError(f"{source}: {yamlsafe.show(account_id)} is not a valid service account id "
                              "(the login the Git server reports).")
        clash = folded.get(account_id.casefold())
        if clash is not None:
            raise PolicyError(f"{source}: {account_id} is both a member ({clash}) and a service "
                              "account; a login is one or the other.")
        if not isinstance(spec, dict):
            raise PolicyError(f"{source}: service account {account_id} must be a mapping, such "
                              "as {acts_for_members: true}.")
        unknown = sorted(str(k) for k in spec if k not in ("acts_for_members", "keys"))
        if unknown:
            raise PolicyError(f"{source}: service account {account_id} has unknown key "
                              f"{yamlsafe.show(unknown[0])}; the keys are acts_for_members "
                              "and keys.")
        acts = spec.get("acts_for_members", False)
        if not isinstance(acts, bool):
            raise PolicyError(f"{source}: service account {account_id}: acts_for_members must "
                              "be true or false.")
        accounts[account_id] = ServiceAccount(
            account_id, acts, _keys(spec.get("keys"), f"service account {account_id}", source))
    return accounts


def _members(raw: Any, source: str) -> dict[str, Member]:
    if not isinstance(raw, dict) or not raw:
        raise PolicyError(f"{source}: members must name at least one member.")
    members: dict[str, Member] = {}
    emails: dict[str, str] = {}
    for member_id, spec in raw.items():
        if not isinstance(member_id, str) or not MEMBER_ID_RE.fullmatch(member_id):
            raise PolicyError(f"{source}: {yamlsafe.show(member_id)} is not a valid member id "
                              "(a login name).")
        if not isinstance(spec, dict):
            raise PolicyError(f"{source}: member {member_id} must have name, email and roles.")
        unknown = [k for k in spec if k not in MEMBER_KEYS]
        if unknown:
            raise PolicyError(f"{source}: member {member_id} has unknown key "
                              f"{yamlsafe.show(unknown[0])}; the keys are name, email, roles and keys.")
        email = spec.get("email")
        if not isinstance(email, str) or not EMAIL_RE.fullmatch(email.strip()):
            raise PolicyError(f"{source}: member {member_id} has no valid email.")
        email = email.strip()
        if email.lower() in emails:
            raise PolicyError(f"{source}: members {emails[email.lower()]} and {member_id} share "
                              f"the email {email}; each member needs their own.")
        emails[email.lower()] = member_id
        name = spec.get("name", member_id)
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "<>\n"):
            raise PolicyError(f"{source}: member {member_id} has an invalid name.")
        roles = spec.get("roles")
        if not isinstance(roles, list) or not roles:
            raise PolicyError(f"{source}: member {member_id} needs a list of roles.")
        for role in roles:
            if role not in ROLES:
                raise PolicyError(f"{source}: member {member_id} has unknown role "
                                  f"{yamlsafe.show(role)}; "
                                  f"roles are {', '.join(ROLES)}.")
        members[member_id] = Member(member_id, name.strip(), email, frozenset(roles),
                                    _keys(spec.get("keys"), f"member {member_id}", source))
    return members
