"""Chat templates and generation configs as the hub repositories ship them.

Written from the ``tokenizer_config.json`` / ``generation_config.json`` files of the model ids
named in the comments (huggingface.co/<model id>).  The tool-calling branches are reproduced as far
as known; only the plain system/user/assistant paths are checked by the tests.
"""

from __future__ import annotations

import copy
from typing import Any

# meta-llama/Meta-Llama-3-8B-Instruct (tokenizer_config.json "chat_template", May 2024 revision
# with add_generation_prompt).  The base meta-llama/Meta-Llama-3-8B ships no chat template.
LLAMA3_INSTRUCT = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_LLAMA31_PREAMBLE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
__DATE__
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
"""

_LLAMA_TOOLS_JSON = """    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
"""

_LLAMA_USER_TOOLS = """
{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
""" + _LLAMA_TOOLS_JSON + """    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}
"""

_LLAMA_TOOL_RESULT = """    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# meta-llama/Llama-3.1-8B-Instruct (tokenizer_config.json "chat_template"): system header with
# "Cutting Knowledge Date: December 2023" / "Today Date: 26 Jul 2024", builtin and custom tools.
LLAMA31_INSTRUCT = _LLAMA31_PREAMBLE.replace(
    "__DATE__", '    {%- set date_string = "26 Jul 2024" %}') + """
{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
""" + _LLAMA_TOOLS_JSON + """{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
""" + _LLAMA_USER_TOOLS + """
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
""" + _LLAMA_TOOL_RESULT

# meta-llama/Llama-3.2-1B-Instruct / -3B-Instruct: like 3.1 without builtin tools; the date comes
# from strftime_now when the renderer provides it (transformers does), else "26 Jul 2024".
LLAMA32_INSTRUCT = _LLAMA31_PREAMBLE.replace("__DATE__", """    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}""") + """
{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
""" + _LLAMA_TOOLS_JSON + """{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
""" + _LLAMA_USER_TOOLS + """
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
""" + _LLAMA_TOOL_RESULT

# Qwen/Qwen2-1.5B-Instruct (and the other Qwen2 sizes, base repos included): ChatML with a
# default system message.
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- '__SYSTEM__' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\n__SYSTEM__<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
# Qwen/Qwen2.5-1.5B-Instruct (all Qwen2.5 instruct sizes)
QWEN25_INSTRUCT = _QWEN25.replace(
    "__SYSTEM__", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
# Qwen/Qwen2.5-1.5B (base repos ship the same template with the plain default system message)
QWEN25_BASE = _QWEN25.replace("__SYSTEM__", "You are a helpful assistant.")


def chat_template(version: str, instruct: bool) -> str | None:
    """The hub chat template for a release line (``llama3``, ``llama3.1``, ``llama3.2``,
    ``qwen2``, ``qwen2.5``); LLaMA base repos ship none."""
    if version.startswith("llama"):
        if not instruct:
            return None
        return {"llama3": LLAMA3_INSTRUCT, "llama3.1": LLAMA31_INSTRUCT,
                "llama3.2": LLAMA32_INSTRUCT}[version]
    if version == "qwen2":
        return QWEN2
    if version == "qwen2.5":
        return QWEN25_INSTRUCT if instruct else QWEN25_BASE
    raise ValueError(version)


# --- generation_config.json --------------------------------------------------------------------

_LLAMA_SAMPLING = {"do_sample": True, "temperature": 0.6, "top_p": 0.9}
_QWEN_BASE = {"bos_token_id": 151643, "do_sample": False, "eos_token_id": 151643,
              "max_new_tokens": 2048, "transformers_version": "4.37.0"}


def _qwen_chat(rep: float) -> dict[str, Any]:
    return {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
            "eos_token_id": [151645, 151643], "repetition_penalty": rep, "temperature": 0.7,
            "top_p": 0.8, "top_k": 20, "transformers_version": "4.37.0"}


GENERATION_CONFIGS: dict[str, dict[str, Any]] = {
    # meta-llama/Meta-Llama-3-8B(-Instruct)/generation_config.json
    "meta-llama/Meta-Llama-3-8B": {"bos_token_id": 128000, "eos_token_id": 128001,
                                   **_LLAMA_SAMPLING, "max_length": 4096,
                                   "transformers_version": "4.40.0.dev0"},
    "meta-llama/Meta-Llama-3-8B-Instruct": {"bos_token_id": 128000,
                                            "eos_token_id": [128001, 128009], **_LLAMA_SAMPLING,
                                            "max_length": 4096,
                                            "transformers_version": "4.40.0.dev0"},
    # meta-llama/Llama-3.1-8B(-Instruct)
    "meta-llama/Llama-3.1-8B": {"_from_model_config": True, "bos_token_id": 128000,
                                "eos_token_id": 128001, **_LLAMA_SAMPLING,
                                "transformers_version": "4.43.0.dev0"},
    "meta-llama/Llama-3.1-8B-Instruct": {"bos_token_id": 128000,
                                         "eos_token_id": [128001, 128008, 128009],
                                         **_LLAMA_SAMPLING, "transformers_version": "4.42.3"},
    # meta-llama/Llama-3.2-{1B,3B}(-Instruct)
    **{f"meta-llama/Llama-3.2-{s}": {"_from_model_config": True, "bos_token_id": 128000,
                                     "eos_token_id": 128001, **_LLAMA_SAMPLING,
                                     "transformers_version": "4.45.0.dev0"} for s in ("1B", "3B")},
    **{f"meta-llama/Llama-3.2-{s}-Instruct": {"bos_token_id": 128000,
                                              "eos_token_id": [128001, 128008, 128009],
                                              **_LLAMA_SAMPLING,
                                              "transformers_version": "4.45.0.dev0"}
       for s in ("1B", "3B")},
    # Qwen/Qwen2{,.5}-{0.5B,1.5B,7B}: greedy base configs; instruct sampling (rep. penalty 1.1 for
    # the small sizes, 1.05 for 7B)
    **{f"Qwen/Qwen{v}-{s}": dict(_QWEN_BASE) for v in ("2", "2.5") for s in ("0.5B", "1.5B", "7B")},
    **{f"Qwen/Qwen{v}-{s}-Instruct": _qwen_chat(1.05 if s == "7B" else 1.1)
       for v in ("2", "2.5") for s in ("0.5B", "1.5B", "7B")},
}


def generation_config(model_id: str) -> dict[str, Any]:
    """The hub generation_config.json of ``model_id`` (a fresh dict)."""
    from .architectures import ALIASES
    return copy.deepcopy(GENERATION_CONFIGS[ALIASES.get(model_id, model_id)])
