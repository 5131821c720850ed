package com.pims.sdk

import com.pims.sdk.ffi.PimsValue

/**
 * Native values to and from the SDK's typed `PimsValue`: maps with string keys, lists (or
 * arrays), strings, booleans, numbers and null. Integers come back as Int when they fit, else
 * Long, so `message["error"]["code"]` is an Int as in the reference.
 */
internal object Values {
    /** A value with no `PimsValue` form (a Date, a custom object, a map with non-string keys). */
    class NotRepresentable : IllegalArgumentException("value has no PimsValue form")

    fun fromNative(value: Any?): PimsValue = when (value) {
        null -> PimsValue.Null
        is Boolean -> PimsValue.Bool(value)
        is Int -> PimsValue.Integer(value.toLong())
        is Long -> PimsValue.Integer(value)
        is Short -> PimsValue.Integer(value.toLong())
        is Byte -> PimsValue.Integer(value.toLong())
        is Double -> PimsValue.Real(value)
        is Float -> PimsValue.Real(value.toDouble())
        is CharSequence -> PimsValue.Text(value.toString())
        is Map<*, *> -> PimsValue.Entries(fromNativeMap(value))
        is Iterable<*> -> PimsValue.Items(value.map(::fromNative))
        is Array<*> -> PimsValue.Items(value.map(::fromNative))
        else -> throw NotRepresentable()
    }

    fun fromNativeMap(map: Map<*, *>): Map<String, PimsValue> =
        map.entries.associate { (k, v) -> (k as? String ?: throw NotRepresentable()) to fromNative(v) }

    fun toNative(value: PimsValue): Any? = when (value) {
        is PimsValue.Null -> null
        is PimsValue.Bool -> value.value
        is PimsValue.Integer -> value.value.let { if (it in Int.MIN_VALUE..Int.MAX_VALUE) it.toInt() else it }
        is PimsValue.Real -> value.value
        is PimsValue.Text -> value.value
        is PimsValue.Items -> value.items.map(::toNative)
        is PimsValue.Entries -> value.entries.mapValues { toNative(it.value) }
    }
}
