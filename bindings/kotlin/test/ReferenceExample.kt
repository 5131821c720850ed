// The Kotlin example of the reference page (pims.authentication.enrollment - enroll), verbatim
// between the markers. `pims` is any object with the wrapper's `set` signature.

fun referenceExample(pims: Recording) {
// ---- reference example, verbatim ----
pims.set("pims.authentication.enrollment",
  mapOf( /* parameters */  
    Pair("action", "enroll"),
    Pair("pinCode", "1234"),
    Pair("smsCode", " ")
  ) 
) { message -> when (message["status"] as? String) {
      "SUCCEEDED" -> { }                          // handle succeeded status
      "FAILED" ->    { }                          // handle failed status
  } }
// ---- end of reference example ----
}

/** The same example against the wrapper's own `Pims` type, to prove it compiles there too. */
fun referenceExampleOnPims(pims: com.pims.sdk.Pims) {
// ---- reference example, verbatim ----
pims.set("pims.authentication.enrollment",
  mapOf( /* parameters */  
    Pair("action", "enroll"),
    Pair("pinCode", "1234"),
    Pair("smsCode", " ")
  ) 
) { message -> when (message["status"] as? String) {
      "SUCCEEDED" -> { }                          // handle succeeded status
      "FAILED" ->    { }                          // handle failed status
  } }
// ---- end of reference example ----
}
