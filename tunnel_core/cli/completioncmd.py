"""``tunnel-client completion bash|zsh|fish``: print a shell completion script.

The script is generated from the argparse tree, so it always matches this build's commands
and flags. It is self-contained: pressing TAB runs shell code only, never tunnel-client.

Every script does the same three things:

1. walk the words typed so far to find the command path (``dev proxy``), skipping the value
   that follows a flag that takes one;
2. after such a flag, offer its choices (``--engine-queue-backend`` -> ``inmem redis``) or
   file names (flags whose value is a PATH or DIR);
3. otherwise offer the path's flags when the word starts with ``-``, else its subcommands
   and the choices of its positional argument (``completion`` -> ``bash zsh fish``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO

SHELLS = ("bash", "zsh", "fish")
PROG = "tunnel-client"
_FILE_METAVARS = frozenset({"PATH", "DIR", "FILE"})

_HOW = {
    "bash": "Load in the current shell:  source <(tunnel-client completion bash)\n"
            "Load in every new shell:    tunnel-client completion bash > "
            "~/.local/share/bash-completion/completions/tunnel-client\n"
            "(needs bash 4+ and, for the second form, the bash-completion package)",
    "zsh": "Load in the current shell:  source <(tunnel-client completion zsh)   (after compinit)\n"
           "Load in every new shell:    tunnel-client completion zsh > \"${fpath[1]}/_tunnel-client\"\n"
           "(compinit must run in ~/.zshrc: autoload -U compinit; compinit)",
    "fish": "Load in the current shell:  tunnel-client completion fish | source\n"
            "Load in every new shell:    tunnel-client completion fish > ~/.config/fish/completions/tunnel-client.fish",
}


def register(sub: Any, root: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "completion", help=HELP["completion"],
        description="Print a script that completes tunnel-client commands, flags and flag values in your shell. "
        "Run `tunnel-client completion SHELL --help` for how to load it.",
    )
    csub = p.add_subparsers(dest="completion_shell", metavar="SHELL")
    p.set_defaults(handler=lambda a, io: (p.print_help(io.stdout), 0)[1])
    for shell in SHELLS:
        s = csub.add_parser(shell, help=f"completion script for {shell}",
                            description=f"Print the {shell} completion script for tunnel-client.\n\n{_HOW[shell]}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if shell != "bash":  # bash shows no descriptions anyway
            s.add_argument("--no-descriptions", action="store_true", help="offer names only, without descriptions")
        s.set_defaults(handler=lambda a, io, shell=shell: _print(io, shell, root, getattr(a, "no_descriptions", False)))


def _print(io: IO, shell: str, root: argparse.ArgumentParser, no_descriptions: bool) -> int:
    io.stdout.write(script(shell, root, descriptions=not no_descriptions))
    io.stdout.flush()
    return 0


# ---------------------------------------------------------------------------- the command tree


@dataclass(slots=True)
class Option:
    flags: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...] = ()
    files: bool = False


@dataclass(slots=True)
class Node:
    """One command path (``""`` for the root, ``"dev proxy"``) and what may follow it."""

    path: str
    subcommands: list[tuple[str, str]] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    positional_choices: list[str] = field(default_factory=list)


def _one_line(text: str | None, default: object = None) -> str:
    if not text or text == argparse.SUPPRESS:
        return ""
    line = " ".join(text.split())
    return line.replace("%(default)s", str(default)).replace("%%", "%")


def command_tree(root: argparse.ArgumentParser) -> list[Node]:
    """Every command path of the parser, root first, with its visible subcommands and flags."""
    nodes: list[Node] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        node = Node(path)
        nodes.append(node)
        children: list[tuple[str, argparse.ArgumentParser]] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, child in action.choices.items():
                    if helps.get(name) == argparse.SUPPRESS:
                        continue
                    node.subcommands.append((name, _one_line(helps.get(name))))
                    children.append((name, child))  # an alias gets its own path, same flags
            elif action.option_strings:
                if action.help == argparse.SUPPRESS:
                    continue
                takes_value = action.nargs not in (0, "?")
                choices = tuple(str(c) for c in action.choices or () if str(c))
                node.options.append(Option(
                    tuple(action.option_strings), _one_line(action.help, action.default), takes_value, choices,
                    files=takes_value and not choices and str(action.metavar or "") in _FILE_METAVARS))
            elif action.choices:
                node.positional_choices.extend(str(c) for c in action.choices)
        for name, child in children:
            walk(child, f"{path} {name}".strip())

    walk(root, "")
    return nodes


# ---------------------------------------------------------------------------- script text


def _q(text: str) -> str:
    """A single-quoted shell word (bash, zsh and fish all read '\\'' the same way)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fish_q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def script(shell: str, root: argparse.ArgumentParser, *, descriptions: bool = True) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    nodes = command_tree(root)
    if shell == "bash":
        return _bash(nodes)
    if shell == "zsh":
        return _zsh(nodes, descriptions)
    if shell == "fish":
        return _fish(nodes, descriptions)
    raise ValueError(f"unsupported shell {shell!r}")


def _value_tables(nodes: list[Node]) -> tuple[list[tuple[str, str]], list[tuple[list[str], str]]]:
    """(path, value-taking flags) per path, and ``path|flag`` keys -> choices or ``__files__``."""
    valopts: list[tuple[str, str]] = []
    values: list[tuple[list[str], str]] = []
    for n in nodes:
        flags = [f for o in n.options if o.takes_value for f in o.flags]
        if flags:
            valopts.append((n.path, " ".join(flags)))
        for o in n.options:
            if o.takes_value and (o.choices or o.files):
                values.append(([f"{n.path}|{f}" for f in o.flags], "__files__" if o.files else " ".join(o.choices)))
    return valopts, values


def _posix_value_functions(nodes: list[Node]) -> str:
    """``__tunnel_client_valopts PATH`` and ``__tunnel_client_values PATH|FLAG`` for bash and zsh."""
    valopts, values = _value_tables(nodes)
    flag_arms = "\n".join(f"    {_q(path)}) echo {_q(flags)} ;;" for path, flags in valopts)
    value_arms = "\n".join(f"    {'|'.join(_q(k) for k in keys)}) echo {_q(value)} ;;" for keys, value in values)
    return (f'__tunnel_client_valopts() {{\n  case "$1" in\n{flag_arms}\n  esac\n}}\n'
            f'__tunnel_client_values() {{\n  case "$1" in\n{value_arms}\n  esac\n}}\n')


def _bash(nodes: list[Node]) -> str:
    value_functions = _posix_value_functions(nodes)
    words = []
    for n in nodes:
        cands = [name for name, _ in n.subcommands] + n.positional_choices
        flags = [f for o in n.options for f in o.flags]
        words.append(f"    {_q(n.path)}) subs={_q(' '.join(cands))}; opts={_q(' '.join(flags))} ;;")
    return f"""# bash completion for {PROG} (generated by `{PROG} completion bash`)
{value_functions}__tunnel_client_words() {{
  case "$1" in
{chr(10).join(words)}
    *) subs=""; opts="" ;;
  esac
}}
_tunnel_client() {{
  local line="${{COMP_LINE:0:COMP_POINT}}" cur="" path="" pending="" subs opts w
  local -a typed
  read -r -a typed <<< "$line"
  [[ "$line" =~ [[:space:]]$ ]] || {{ cur="${{typed[-1]}}"; unset 'typed[-1]'; }}
  for w in "${{typed[@]:1}}"; do
    if [[ -n "$pending" ]]; then pending=""; continue; fi
    if [[ "$w" == -* ]]; then
      [[ "$w" != *=* && " $(__tunnel_client_valopts "$path") " == *" $w "* ]] && pending="$w"
      continue
    fi
    __tunnel_client_words "$path"
    [[ " $subs " == *" $w "* ]] && path="${{path:+$path }}$w"
  done
  COMPREPLY=()
  if [[ -n "$pending" ]]; then
    local vals; vals="$(__tunnel_client_values "$path|$pending")"
    if [[ "$vals" == __files__ ]]; then
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    elif [[ -n "$vals" ]]; then
      mapfile -t COMPREPLY < <(compgen -W "$vals" -- "$cur")
    fi
    return 0
  fi
  __tunnel_client_words "$path"
  if [[ "$cur" == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
  fi
}}
complete -o default -F _tunnel_client {PROG}
"""


def _described(pairs: list[tuple[str, str]], descriptions: bool, sep: str) -> str:
    return "\n".join(f"{name}{sep}{desc}" if descriptions and desc else name for name, desc in pairs)


def _zsh(nodes: list[Node], descriptions: bool) -> str:
    value_functions = _posix_value_functions(nodes)
    subs, opts = [], []
    for n in nodes:
        pairs = [(name.replace(":", "\\:"), d) for name, d in n.subcommands] + [(c, "") for c in n.positional_choices]
        if pairs:
            subs.append(f"    {_q(n.path)}) print -r -- {_q(_described(pairs, descriptions, ':'))} ;;")
        flag_pairs = [(f, o.help) for o in n.options for f in o.flags]
        if flag_pairs:
            opts.append(f"    {_q(n.path)}) print -r -- {_q(_described(flag_pairs, descriptions, ':'))} ;;")
    return f"""#compdef {PROG}
# zsh completion for {PROG} (generated by `{PROG} completion zsh`)
{value_functions}__tunnel_client_subs() {{
  case "$1" in
{chr(10).join(subs)}
  esac
}}
__tunnel_client_opts() {{
  case "$1" in
{chr(10).join(opts)}
  esac
}}
# Prints "kind<TAB>..." for the words typed before the cursor: "values<TAB>v1 v2", "files",
# "options<TAB>path" or "commands<TAB>path".
__tunnel_client_state() {{
  local path="" pending="" w
  local -a names
  for w in "$@"; do
    if [[ -n "$pending" ]]; then pending=""; continue; fi
    if [[ "$w" == -* ]]; then
      [[ "$w" != *=* && " $(__tunnel_client_valopts "$path") " == *" $w "* ]] && pending="$w"
      continue
    fi
    names=(${{${{(f)"$(__tunnel_client_subs "$path")"}}%%:*}})
    (( ${{names[(Ie)$w]}} )) && path="${{path:+$path }}$w"
  done
  if [[ -n "$pending" ]]; then
    local vals="$(__tunnel_client_values "$path|$pending")"
    if [[ "$vals" == __files__ ]]; then print -r -- files; else print -r -- "values	$vals"; fi
  elif [[ "$PREFIX" == -* ]]; then
    print -r -- "options	$path"
  else
    print -r -- "commands	$path"
  fi
}}
_tunnel_client() {{
  local state="$(__tunnel_client_state "${{(@)words[2,CURRENT-1]}}")"
  local kind="${{state%%	*}}" rest="${{state#*	}}"
  local -a items
  case "$kind" in
    files) _files ;;
    values) items=(${{=rest}}); compadd -a items ;;
    options) items=("${{(@f)$(__tunnel_client_opts "$rest")}}"); _describe -t options option items ;;
    commands) items=("${{(@f)$(__tunnel_client_subs "$rest")}}"); (( $#items )) && _describe -t commands command items ;;
  esac
}}
if (( $+functions[compdef] )); then
  compdef _tunnel_client {PROG}
fi
"""


def _fish(nodes: list[Node], descriptions: bool) -> str:
    valopt_table, value_table = _value_tables(nodes)
    cands = []
    for n in nodes:
        subs = [(name, d) for name, d in n.subcommands] + [(c, "") for c in n.positional_choices]
        flags = [(f, o.help) for o in n.options for f in o.flags]
        body = []
        if subs:
            body.append(f"            printf '%s\\n' {' '.join(_fish_q(s) for s in _described(subs, descriptions, chr(9)).splitlines())}")
        if flags:
            body.append(f"            printf '%s\\n' {' '.join(_fish_q(s) for s in _described(flags, descriptions, chr(9)).splitlines())}")
        if body:
            cands.append(f"        case {_fish_q(n.path)}\n" + "\n".join(body))
    fish_valopts = "\n".join(f"        case {_fish_q(path)}\n            echo {_fish_q(flags)}"
                             for path, flags in valopt_table)
    fish_values = "\n".join(f"        case {' '.join(_fish_q(k) for k in keys)}\n            echo {_fish_q(value)}"
                             for keys, value in value_table)
    return f"""# fish completion for {PROG} (generated by `{PROG} completion fish`)
function __tunnel_client_valopts
    switch $argv[1]
{fish_valopts}
    end
end
function __tunnel_client_values
    switch $argv[1]
{fish_values}
    end
end
function __tunnel_client_candidates
    switch $argv[1]
{chr(10).join(cands)}
    end
end
function __tunnel_client_complete
    set -l typed (commandline -opc)
    set -l cur (commandline -ct)
    set -l path ""
    set -l pending ""
    for w in $typed[2..-1]
        if test -n "$pending"
            set pending ""
            continue
        end
        if string match -q -- '-*' $w
            if not string match -q -- '*=*' $w; and contains -- $w (string split ' ' -- (__tunnel_client_valopts $path))
                set pending $w
            end
            continue
        end
        set -l names (__tunnel_client_candidates $path | string match -v -- '-*' | string replace -r '\\t.*' '')
        if contains -- $w $names
            set path (string trim -- "$path $w")
        end
    end
    if test -n "$pending"
        set -l vals (__tunnel_client_values "$path|$pending")
        if test "$vals" = __files__
            __fish_complete_path $cur
        else if test -n "$vals"
            string split ' ' -- $vals
        end
        return
    end
    if string match -q -- '-*' $cur
        __tunnel_client_candidates $path | string match -- '-*'
    else
        __tunnel_client_candidates $path | string match -v -- '-*'
    end
end
complete -c {PROG} -f -a '(__tunnel_client_complete)'
"""
