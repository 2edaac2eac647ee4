# bash completion for athost(1): options, ports, flows and their parameters.
# Installed as PREFIX/share/bash-completion/completions/athost; in the
# source tree: source completion/athost.bash

_athost_opts="-p --port -b --baud -l --log --log-max --config --json -q --quiet
-e -i --ports --ports-file --table --junit --logdir --scan --list --params
-h --help --version"

# The ports worth offering: USB serial ttys, their by-id names, the kinds of
# port spec athost takes.
_athost_ports()
{
    local p
    for p in /dev/serial/by-id/* /dev/ttyUSB* /dev/ttyACM* /dev/ttyS[0-9]; do
        [ -e "$p" ] && printf '%s\n' "$p"
    done
    printf '%s\n' tcp: rfc2217: sim:air720 sim:air780e sim:me3630 sim:a7670 sim:ec200u
}

_athost()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n := || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    local athost=${words[0]}

    case $prev in
        -p|--port)
            mapfile -t COMPREPLY < <(compgen -W "$(_athost_ports)" -- "$cur")
            return ;;
        -b|--baud)
            mapfile -t COMPREPLY < <(compgen -W "9600 19200 38400 57600 115200 230400 460800 921600" -- "$cur")
            return ;;
        -l|--log|--config|--table|--junit|--ports-file)
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return ;;
        --logdir)
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            return ;;
        --log-max|-e|--ports)
            return ;;
        --params)
            mapfile -t COMPREPLY < <(compgen -W "$("$athost" --list 2>/dev/null | cut -d' ' -f1)" -- "$cur")
            return ;;
    esac

    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$_athost_opts" -- "$cur")
        return
    fi

    # The script: the first word that is no option, no option's value and
    # no key=value.
    local i script= skip=
    for ((i = 1; i < cword; i++)); do
        local w=${words[i]}
        if [[ -n $skip ]]; then skip=; continue; fi
        case $w in
            -p|--port|-b|--baud|-l|--log|--log-max|--config|-e|--ports|--ports-file|--table|--junit|--logdir|--params)
                skip=1 ;;
            -*|*=*) ;;
            *) script=$w; break ;;
        esac
    done

    if [[ -z $script ]]; then
        # flows by name, and files here
        mapfile -t COMPREPLY < <(compgen -W "$("$athost" --list 2>/dev/null | cut -d' ' -f1)" -- "$cur"; compgen -f -X '!*.lua' -- "$cur"; compgen -d -S / -- "$cur")
        [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == */ ]] && compopt -o nospace 2>/dev/null
        return
    fi
    # the flow's parameters (athost --params reads them from its source)
    mapfile -t COMPREPLY < <(compgen -W "$("$athost" --params "$script" 2>/dev/null)" -- "$cur")
    [[ ${#COMPREPLY[@]} -ge 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    return 0
}
complete -F _athost athost
