package com.pims.sdk

/**
 * The little JSON the wrapper needs to carry maps across the FFI: no dependency, so the same
 * source works on Android and on a plain JVM. Numbers decode as Int when they fit, else Long,
 * else Double, so `message["error"]["code"]` is an Int as in the reference.
 */
internal object Json {
    fun encode(value: Any?): String = StringBuilder().also { write(it, value) }.toString()

    fun decode(text: String): Any? {
        val parser = Parser(text)
        val value = parser.value()
        parser.end()
        return value
    }

    private fun write(out: StringBuilder, value: Any?) {
        when (value) {
            null -> out.append("null")
            is String -> string(out, value)
            is Char -> string(out, value.toString())
            is Boolean -> out.append(value)
            is Int, is Long, is Short, is Byte -> out.append(value)
            is Double -> number(out, value)
            is Float -> number(out, value.toDouble())
            is Number -> out.append(value.toString())
            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(',')
                    string(out, k.toString())
                    out.append(':')
                    write(out, v)
                }
                out.append('}')
            }
            is Pair<*, *> -> write(out, mapOf(value.first.toString() to value.second))
            is Iterable<*> -> list(out, value.toList())
            is Array<*> -> list(out, value.toList())
            else -> throw IllegalArgumentException("cannot pass a ${value::class.simpleName} to the SDK")
        }
    }

    private fun number(out: StringBuilder, value: Double) {
        require(value.isFinite()) { "cannot pass $value to the SDK" }
        out.append(value)
    }

    private fun list(out: StringBuilder, items: List<*>) {
        out.append('[')
        items.forEachIndexed { i, v ->
            if (i > 0) out.append(',')
            write(out, v)
        }
        out.append(']')
    }

    private fun string(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                else -> if (c < ' ') out.append(String.format("\\u%04x", c.code)) else out.append(c)
            }
        }
        out.append('"')
    }

    private class Parser(private val s: String) {
        private var i = 0

        fun end() {
            space()
            if (i != s.length) fail()
        }

        fun value(): Any? {
            space()
            if (i >= s.length) fail()
            return when (s[i]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> word("true", true)
                'f' -> word("false", false)
                'n' -> word("null", null)
                else -> num()
            }
        }

        private fun obj(): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            i++
            space()
            if (peek() == '}') { i++; return map }
            while (true) {
                space()
                val key = str()
                space()
                expect(':')
                map[key] = value()
                space()
                if (peek() == ',') { i++; continue }
                expect('}')
                return map
            }
        }

        private fun arr(): List<Any?> {
            val list = ArrayList<Any?>()
            i++
            space()
            if (peek() == ']') { i++; return list }
            while (true) {
                list.add(value())
                space()
                if (peek() == ',') { i++; continue }
                expect(']')
                return list
            }
        }

        private fun str(): String {
            expect('"')
            val out = StringBuilder()
            while (true) {
                if (i >= s.length) fail()
                val c = s[i++]
                when (c) {
                    '"' -> return out.toString()
                    '\\' -> {
                        if (i >= s.length) fail()
                        when (val e = s[i++]) {
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000c')
                            'u' -> {
                                if (i + 4 > s.length) fail()
                                out.append(s.substring(i, i + 4).toInt(16).toChar())
                                i += 4
                            }
                            else -> out.append(e)
                        }
                    }
                    else -> out.append(c)
                }
            }
        }

        private fun num(): Number {
            val start = i
            while (i < s.length && s[i] in "+-0123456789.eE") i++
            val text = s.substring(start, i)
            if (text.isEmpty()) fail()
            if (text.none { it == '.' || it == 'e' || it == 'E' }) {
                val long = text.toLongOrNull()
                if (long != null) {
                    return if (long in Int.MIN_VALUE..Int.MAX_VALUE) long.toInt() else long
                }
            }
            return text.toDoubleOrNull() ?: fail()
        }

        private fun <T> word(w: String, v: T): T {
            if (!s.startsWith(w, i)) fail()
            i += w.length
            return v
        }

        private fun peek(): Char? = if (i < s.length) s[i] else null

        private fun expect(c: Char) {
            if (peek() != c) fail()
            i++
        }

        private fun space() {
            while (i < s.length && s[i].isWhitespace()) i++
        }

        private fun fail(): Nothing = throw IllegalArgumentException("malformed JSON from the SDK at $i")
    }
}
